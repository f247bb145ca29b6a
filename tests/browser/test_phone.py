"""At phone width (390x844): every page is in the navigation's sight, Plotly's toolbar covers
no chart title, and grids scroll sideways with readable columns instead of squeezing them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Error as PlaywrightError

from tests.plugins.browser import PAGES, DashboardServer, wait_for_panels

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}

# Bounding boxes of each graph's visible toolbar and of its titles (layout title and the
# bold titles of a grid figure's small charts), in viewport pixels.
GRAPH_BOXES = """() => Array.from(document.querySelectorAll('.mc-graph')).map(graph => {
    const box = element => {
        const r = element.getBoundingClientRect();
        return {left: r.left, right: r.right, top: r.top, bottom: r.bottom,
                text: element.textContent};
    };
    const shown = element => element.getBoundingClientRect().width > 0
        && getComputedStyle(element).visibility !== 'hidden'
        && element.closest('.modebar-container') !== null
        && getComputedStyle(element.closest('.modebar-container')).display !== 'none';
    return {
        toolbars: Array.from(graph.querySelectorAll('.modebar')).filter(shown).map(box),
        titles: Array.from(graph.querySelectorAll('.gtitle, .annotation-text')).map(box),
    };
})"""


def overlaps(a: dict, b: dict) -> bool:
    return (
        a["left"] < b["right"]
        and b["left"] < a["right"]
        and a["top"] < b["bottom"]
        and (b["top"] < a["bottom"])
    )


@pytest.fixture
def phone_page(browser, live_server: DashboardServer) -> Iterator[object]:
    context = browser.new_context(
        viewport=PHONE, is_mobile=True, has_touch=True, base_url=live_server.url
    )
    context.set_default_timeout(20_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def test_every_navigation_link_is_in_sight_without_scrolling(phone_page):
    phone_page.goto(PAGES["overview"])
    wait_for_panels(phone_page)
    nav = phone_page.locator(".mc-nav")
    assert nav.evaluate("nav => nav.scrollWidth <= nav.clientWidth"), "the navigation scrolls"
    links = nav.locator("a").all()
    assert len(links) == len(PAGES)
    for link in links:
        box = link.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (
            f"{link.inner_text()} is cut off: {box}"
        )
    # And the last one works: it is the element a tap at its centre lands on.
    links[-1].tap()
    phone_page.wait_for_url(f"**{PAGES['lake']}*")


def _scroll_to(locator) -> None:
    """Scroll to it; a refresh that swaps the element mid-scroll is tried again."""
    for attempt in range(3):
        try:
            locator.scroll_into_view_if_needed()
            return
        except PlaywrightError as exc:
            if "not attached" not in str(exc) or attempt == 2:
                raise


@pytest.mark.parametrize("name", ["health", "revenue"])
def test_no_chart_title_is_under_the_toolbar(phone_page, name: str):
    phone_page.goto(PAGES[name])
    wait_for_panels(phone_page)
    graphs = phone_page.locator(".mc-graph")
    assert graphs.count() > 0
    for index in range(graphs.count()):
        # By position, not by element: a panel that refreshes replaces its chart's element.
        graph = graphs.nth(index)
        _scroll_to(graph)
        # The pointer over the chart brings Plotly's hover toolbar up, when it is shown at all
        # (a tap would click a bar and drill down).
        graph.hover()
        for chart in phone_page.evaluate(GRAPH_BOXES):
            for toolbar in chart["toolbars"]:
                covered = [title["text"] for title in chart["titles"] if overlaps(toolbar, title)]
                assert not covered, f"the toolbar covers {covered} on {name}"


def test_a_grid_scrolls_sideways_to_more_than_two_readable_columns(phone_page):
    phone_page.goto(PAGES["revenue"])
    wait_for_panels(phone_page)
    grid = phone_page.locator("#panel-revenue-products")
    viewport = grid.locator(".ag-center-cols-viewport")
    viewport.scroll_into_view_if_needed()
    widths = viewport.evaluate("v => [v.scrollWidth, v.clientWidth]")
    assert widths[0] > widths[1], f"the grid squeezes its columns into the screen: {widths}"
    headers = grid.locator(".ag-header-row-column .ag-header-cell")
    assert headers.count() > 2
    header_widths = headers.evaluate_all("cells => cells.map(c => c.getBoundingClientRect().width)")
    assert min(header_widths) >= 100, f"columns too narrow to read: {header_widths}"
    # The page itself does not scroll sideways: only the grid does.
    assert phone_page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    # Scrolled to its end, the grid shows its last column's header in sight.
    grid.locator(".ag-body-horizontal-scroll-viewport").evaluate(
        "v => { v.scrollLeft = v.scrollWidth; }"
    )
    last = headers.last
    phone_page.wait_for_function(
        """cell => { const r = cell.getBoundingClientRect(); return r.right <= window.innerWidth
            && r.left >= 0; }""",
        arg=last.element_handle(),
    )


# Whether an element is on screen and is what a tap at its centre lands on.
IN_SIGHT_AND_ON_TOP = """element => {
    const r = element.getBoundingClientRect();
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    return {left: r.left, right: r.right, width: r.width, top: r.top,
            onTop: hit !== null && element.contains(hit)};
}"""


def test_the_header_keeps_sign_out_and_the_role_in_sight(phone_page):
    phone_page.goto(PAGES["overview"])
    wait_for_panels(phone_page)
    # Refresh off makes the freshness indicator its widest ("Refresh off · updated ...").
    phone_page.locator(".mc-refresh").select_option("0")
    phone_page.wait_for_function(
        """() => document.querySelector('#mc-freshness').dataset.state === 'off'
            && document.querySelector('.mc-freshness-text').textContent.includes('updated')"""
    )
    for selector in (".mc-role", ".mc-signout", ".mc-theme-icon", ".mc-refresh", "#mc-freshness"):
        box = phone_page.locator(selector).evaluate(IN_SIGHT_AND_ON_TOP)
        assert box["width"] > 0 and box["left"] >= 0 and box["right"] <= PHONE["width"], (
            f"{selector} is cut off at phone width: {box}"
        )
        assert box["onTop"], f"{selector} is covered at phone width: {box}"
    assert phone_page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    phone_page.locator(".mc-signout").tap()
    phone_page.wait_for_url("**/logout")
