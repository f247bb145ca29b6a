"""A viewer's day in a real browser: nothing offered that the server would refuse."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.plugins.browser import (
    PAGES,
    VIEWPORT,
    DashboardServer,
    SampleLake,
    dom_id,
    wait_for_panels,
)

pytestmark = pytest.mark.browser

TICKS = 4  # polls of a fleet panel to watch after the page settles


@pytest.fixture(scope="module")
def viewer_server(sample_lake: SampleLake) -> Iterator[DashboardServer]:
    server = DashboardServer(sample_lake, extra_env={"DEV_ROLE": "viewer"})
    try:
        server.start()
        server.warm_up_workers()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def viewer_page(browser, viewer_server: DashboardServer) -> Iterator[object]:
    context = browser.new_context(viewport=VIEWPORT, base_url=viewer_server.url)
    context.set_default_timeout(20_000)
    tab = context.new_page()
    tab.refused = []  # every 403 the page receives
    tab.errors = []
    tab.on("response", lambda response: response.status == 403 and tab.refused.append(response.url))
    tab.on("pageerror", lambda error: tab.errors.append(str(error)))
    try:
        yield tab
    finally:
        context.close()


def _is_fleet_poll(response) -> bool:
    """The page's poll (one per tick), asking about the fleet panel among others."""
    return response.url.endswith("/poll") and '"fleet-activity"' in (
        response.request.post_data or ""
    )


@pytest.mark.parametrize("path", ["overview", "screen-time", "revenue"])
def test_a_viewer_is_offered_no_csv_links_or_customer_picker(viewer_page, path):
    viewer_page.goto(PAGES[path])
    wait_for_panels(viewer_page)
    expect(viewer_page.locator(".mc-role")).to_have_text("viewer")
    expect(viewer_page.locator(".mc-export")).to_have_count(0)
    expect(viewer_page.locator(".mc-inspect-link")).to_have_count(0)
    expect(viewer_page.locator("#screen-customer")).to_have_count(0)
    assert viewer_page.refused == [] and viewer_page.errors == []


def test_a_shared_inspect_link_shows_a_viewer_no_rows(viewer_page):
    viewer_page.goto("/inspect?panel=products&range=7d")
    expect(viewer_page.locator("#inspect")).to_contain_text("needs the operator role")
    expect(viewer_page.locator("#inspect-rows")).to_have_count(0)
    expect(viewer_page.locator("#inspect-query")).to_have_count(0)
    expect(viewer_page.locator(".mc-nav-link")).to_have_count(len(PAGES))  # not a nav entry
    assert viewer_page.errors == []


def test_a_shared_drill_down_link_says_it_needs_operator_and_polls_into_no_403(
    viewer_page, sample_lake: SampleLake
):
    day = sample_lake.end_date.isoformat()
    viewer_page.goto(f"{PAGES['screen-time']}?range=7d&customer=c0000001&day={day}")
    message = viewer_page.locator("#customer-needs-operator")
    expect(message).to_contain_text("needs the operator role")
    expect(message).to_contain_text("c0000001")
    expect(viewer_page.locator(dom_id("customer-trend", "graph"))).to_have_count(0)
    wait_for_panels(viewer_page)
    # Several refresh ticks pass (each polls the fleet panel) without one refused answer.
    for _ in range(TICKS):
        with viewer_page.expect_response(_is_fleet_poll, timeout=10_000):
            pass
    assert viewer_page.refused == []
    expect(message).to_have_count(1)
