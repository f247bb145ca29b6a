"""Every page renders with data in a real browser, without errors; screenshots for the README."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from dashboard import health_figures as figures
from dashboard.pages import health
from tests.plugins.browser import PAGES, SCREENSHOTS, dom_id, wait_for_panels

pytestmark = pytest.mark.browser

# "Error rate" is a health metric; any other "Error" on a page is a failure.
ERROR_TEXT = re.compile(r"\bError\b(?! rate)")
DASH_ERROR_SELECTORS = ".dash-fe-error__title, .dash-error-card, .dash-debug-alert"


@pytest.mark.parametrize("name", list(PAGES))
def test_page_renders_with_data(page, name: str):
    page.goto(PAGES[name])
    wait_for_panels(page)

    body = page.locator("body").inner_text()
    assert not ERROR_TEXT.search(body), f"{name} shows an error: {body[:500]}"
    assert page.locator(DASH_ERROR_SELECTORS).count() == 0
    # No panel is degraded (a status line appears only when a read failed).
    assert page.locator(".mc-status").count() == 0, page.locator(".mc-status").all_inner_texts()

    # Number tiles (the health page's status tiles show a word and a latency instead).
    tile_values = page.locator(".mc-tile:not(.health-tile) .mc-tile-value").all_inner_texts()
    assert all(re.search(r"\d", value) for value in tile_values), tile_values
    drawn = 0
    for graph in page.locator(".mc-graph").all():
        if graph.is_visible():
            # Every chart drew at least one trace: a "no data" chart has none.
            expect(graph.locator("g.trace").first).to_be_attached()
            drawn += 1
    numbers = [text for text in page.locator("td").all_inner_texts() if re.search(r"\d", text)]
    assert tile_values or drawn or numbers, f"{name} shows no numbers"

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
    assert page.console.errors == [], page.console.errors


def test_alerts_page_lists_the_alerts_the_rules_opened(page, sample_lake):
    from data_access.alerts import AlertsQuery

    alerts = AlertsQuery().load(sample_lake.stores())
    assert (alerts["status"] == "open").any()
    page.goto(PAGES["alerts"])
    wait_for_panels(page)
    rows = page.locator("#panel-alerts-list tbody tr")
    expect(rows).to_have_count(len(alerts))
    expect(rows.first).to_contain_text(str(alerts["rule"].iloc[0]))


def test_every_page_in_the_navigation_is_tested(page):
    page.goto(PAGES["overview"])
    wait_for_panels(page)
    linked = {
        href.split("?", 1)[0]
        for href in page.locator(".mc-nav a").evaluate_all(
            "links => links.map(a => a.getAttribute('href'))"
        )
    }
    assert linked == set(PAGES.values()), "add new pages to tests.plugins.browser.PAGES"


def test_health_page_shows_every_dependency(page, live_server, sample_lake):
    page.goto(PAGES["health"])
    wait_for_panels(page)

    tiles = page.locator(f"{dom_id('health-status', 'content')} [data-probe]")
    statuses = {
        tile.get_attribute("data-probe"): tile.get_attribute("data-status") for tile in tiles.all()
    }
    assert statuses["Dashboard app"] == "up"
    assert statuses["Cache table"] == "up"
    assert statuses["Lake"] == "up"
    # The server's own /healthz is configured as an external endpoint for the test.
    assert statuses["Dashboard healthz"] == "up"
    assert statuses["Identity provider"] == "unconfigured"
    identity = tiles.filter(has_text="Identity provider")
    assert "not configured (dev sign-in)" in identity.inner_text()
    # Each probe's detail is shown whole: it wraps instead of being cut with an ellipsis.
    cut = tiles.locator(".mc-tile-note").evaluate_all(
        "notes => notes.filter(n => n.scrollWidth > n.clientWidth).map(n => n.textContent)"
    )
    assert cut == []

    stats = health.pipeline_query(time.time()).load(sample_lake.stores())
    numbers = figures.pipeline_numbers(stats)
    expect(page.locator("#tile-health-uploads-processed .mc-tile-value")).to_have_text(
        f"{numbers.uploads_processed:,}"
    )
    expect(page.locator("#tile-health-uploads-quarantined .mc-tile-value")).to_have_text(
        f"{numbers.uploads_quarantined:,}"
    )
    live = page.locator(dom_id("health-pipeline-live", "content")).inner_text()
    assert "Cache hit ratio" in live and "%" in live
    assert page.locator("#tile-health-live-cpu .mc-tile-value").inner_text().endswith("%")


def test_an_unknown_range_in_the_url_is_named_on_the_page_and_kept_in_the_url(page):
    page.goto(f"{PAGES['revenue']}?range=bogus")
    wait_for_panels(page)
    notice = page.locator(".alert-warning")
    expect(notice).to_contain_text("Unknown range 'bogus'; showing the last 7 days")
    # The pickers render with the default range without rewriting the URL (and the notice).
    with page.expect_response(lambda response: response.url.endswith("/poll")):
        pass  # one more exchange with the server (the page's tick) after the page settled
    assert page.url.endswith("range=bogus")
    expect(notice).to_be_visible()


def test_lake_page_is_a_panel_with_a_badge_that_keeps_polling(page):
    from dashboard.pages import lake

    page.goto(PAGES["lake"])
    wait_for_panels(page)
    panel = page.locator("#panel-lake-summary")
    expect(panel.locator(".mc-panel-title")).to_have_text("Objects per zone")
    # The source: the lake, the cache table, or this worker's memo of an earlier visit.
    expect(panel.locator(".mc-badge")).to_contain_text(re.compile("lake|cache|memory"))
    expect(panel.locator(".mc-badge .mc-age")).to_have_count(1)  # and how old they are
    expect(panel.locator("tbody tr")).to_have_count(len(lake.PREFIXES))
    for _ in range(2):  # the page's tick asks about the lake panel like any other
        with page.expect_response(
            lambda response: (
                response.url.endswith("/poll")
                and "lake-summary" in (response.request.post_data or "")
            )
        ):
            pass
