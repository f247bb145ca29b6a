"""The header's freshness indicator and the hours window of Health and Alerts, in a browser."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.test_polling import SET_VISIBILITY
from tests.plugins.browser import PAGES, dom_id, wait_for_panels

pytestmark = pytest.mark.browser

FRESHNESS = "#mc-freshness"
# Dash adds a query string to its callback URL.
DASH_CALLS = "**/_dash-update-component*"

# The time span, in hours, of a chart's drawn points (Plotly keeps its data on the graph div).
SPAN_HOURS = """graph => {
    const times = graph.querySelector('.js-plotly-plot').data
        .flatMap(trace => trace.x || []).map(x => Date.parse(String(x)));
    return (Math.max(...times) - Math.min(...times)) / 3_600_000;
}"""


def test_the_header_says_updated_paused_refresh_off_and_offline(page):
    page.goto(PAGES["health"])
    wait_for_panels(page)
    indicator = page.locator(FRESHNESS)
    expect(indicator).to_have_attribute("data-state", "live")
    expect(indicator).to_have_text(re.compile(r"^Updated (just now|\d+ s ago)$"))

    page.evaluate(SET_VISIBILITY, True)
    expect(indicator).to_have_attribute("data-state", "paused")
    expect(indicator).to_have_text(re.compile(r"^Paused · updated "))
    page.evaluate(SET_VISIBILITY, False)
    expect(indicator).to_have_attribute("data-state", "live")

    # Polls that get no answer: offline, until one is answered again.
    page.route(DASH_CALLS, lambda route: route.abort())
    expect(indicator).to_have_attribute("data-state", "offline")
    expect(indicator).to_have_text(re.compile(r"^Offline · updated "))
    page.unroute(DASH_CALLS)
    page.reload()
    wait_for_panels(page)
    expect(indicator).to_have_attribute("data-state", "live")

    page.locator("#mc-refresh").select_option("0")
    expect(indicator).to_have_attribute("data-state", "off")
    expect(indicator).to_have_text(re.compile(r"^Refresh off · updated "))
    expect(indicator).to_be_visible()


@pytest.mark.parametrize("name", ["health", "alerts"])
def test_health_and_alerts_offer_the_last_hour_six_hours_and_day(page, name: str):
    page.goto(PAGES[name])
    wait_for_panels(page)
    picker = page.locator("#mc-window")
    expect(picker).to_have_value("24h")
    options = [text for text in picker.locator("option").all_inner_texts() if text]
    assert options == ["Last 1 hour", "Last 6 hours", "Last 24 hours"]
    picker.select_option("1h")
    page.wait_for_url(re.compile(r"window=1h"))
    wait_for_panels(page)
    expect(page.locator("#mc-window")).to_have_value("1h")
    # The hours window follows the navigation to the other page that has one.
    other = "alerts" if name == "health" else "health"
    href = page.locator(f".mc-nav a[href^='{PAGES[other]}']").get_attribute("href")
    assert href == f"{PAGES[other]}?window=1h"


def span_hours(page) -> float:
    """Hours between the host chart's first and last points, once Plotly has drawn it."""
    hosts = page.locator(dom_id("health-host-history", "graph"))
    expect(hosts.locator(".js-plotly-plot")).to_have_count(1)
    return hosts.evaluate(SPAN_HOURS)


def test_the_health_charts_show_the_window_chosen(page):
    page.goto(f"{PAGES['health']}?window=1h")
    wait_for_panels(page)
    expect(page.locator("#panel-health-host-history .mc-panel-title")).to_have_text(
        "Hosts, last 1 hour"
    )
    assert span_hours(page) <= 1 + 5 / 60
    page.goto(f"{PAGES['health']}?window=24h")
    wait_for_panels(page)
    # The sample has a day and more of metrics: the long window draws far more than an hour.
    assert span_hours(page) > 6


def test_an_unknown_window_is_named_and_the_default_shown(page):
    page.goto(f"{PAGES['alerts']}?window=7d")
    wait_for_panels(page)
    expect(page.locator(".alert-warning")).to_contain_text("Unknown window '7d'")
    expect(page.locator("#mc-window")).to_have_value("24h")
    assert "window=7d" in page.url
