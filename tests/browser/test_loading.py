"""Loading states keep each card's size: while a panel's data loads (first, or again after a
range change) its card is the box it has once loaded, so the page does not jump.

The panels' Dash callbacks are held at the network until their loading state is measured, then
let through; the same cards are measured again once every panel has answered.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from tests.plugins.browser import PAGES, DashboardServer, SampleLake, wait_for_panels

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1400, "height": 1000}
# Sub-pixel rounding only: a line of text is ~20 px.
TOLERANCE_PX = 1.0

CARD_HEIGHTS = """() => Object.fromEntries(Array.from(document.querySelectorAll('.mc-panel'))
    .map(card => [card.id, card.getBoundingClientRect().height]))"""

# Every panel is on the page and drawn in its loading state: charts have their (empty) plot,
# grids their frame, and fonts are in, so the boxes measured are the ones a user sees.
LOADING_DRAWN = """() => {
    const cards = document.querySelectorAll('.mc-panel');
    const graphs = document.querySelectorAll('.mc-graph');
    const grids = document.querySelectorAll('.mc-grid');
    return cards.length > 0
        && document.querySelectorAll('.mc-tier-pending').length > 0
        && Array.from(graphs).every(g => g.querySelector('.main-svg'))
        && Array.from(grids).every(g => g.querySelector('.ag-root'))
        && document.fonts.status === 'loaded';
}"""


class PanelCallbacks:
    """Holds the panels' Dash callbacks (those that write a panel's data version) while on."""

    def __init__(self, page) -> None:
        self.holding = True
        self.held: list = []
        page.route("**/_dash-update-component*", self._route)

    def _route(self, route) -> None:
        if self.holding and '"mc-version"' in (route.request.post_data or ""):
            self.held.append(route)
        else:
            route.continue_()

    def hold(self) -> None:
        self.holding = True

    def release(self) -> None:
        self.holding = False
        held, self.held = self.held, []
        for route in held:
            route.continue_()


def _settled_heights(page) -> dict[str, float]:
    # Two animation frames: the answers' content is laid out before it is measured.
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    return page.evaluate(CARD_HEIGHTS)


def _jumps(loading: dict[str, float], loaded: dict[str, float]) -> dict[str, tuple]:
    assert set(loading) == set(loaded), (loading, loaded)
    return {
        card: (round(loading[card], 1), round(loaded[card], 1))
        for card in loaded
        if abs(loading[card] - loaded[card]) > TOLERANCE_PX
    }


def _load_and_compare(page, callbacks: PanelCallbacks) -> dict[str, tuple]:
    page.wait_for_function(LOADING_DRAWN)
    loading = _settled_heights(page)
    callbacks.release()
    wait_for_panels(page)
    return _jumps(loading, _settled_heights(page))


@pytest.fixture
def make_page(browser, live_server: DashboardServer) -> Iterator:
    contexts = []

    def make(viewport: dict[str, int]):
        context = browser.new_context(viewport=viewport, base_url=live_server.url)
        context.set_default_timeout(30_000)
        contexts.append(context)
        page = context.new_page()
        return page, PanelCallbacks(page)

    yield make
    for context in contexts:
        context.close()


def _drill_down_paths(lake: SampleLake) -> list[str]:
    day = lake.end_date
    monday = day - dt.timedelta(days=day.weekday())
    return [
        PAGES["overview"],
        f"{PAGES['screen-time']}?customer=c0000001&day={day.isoformat()}",
        f"{PAGES['revenue']}?week={monday.isoformat()}",
        PAGES["lake"],
    ]


def test_every_card_keeps_its_size_from_loading_to_loaded(make_page, sample_lake: SampleLake):
    page, callbacks = make_page(DESKTOP)
    for path in _drill_down_paths(sample_lake):
        callbacks.hold()
        page.goto(path)
        assert _load_and_compare(page, callbacks) == {}, f"cards jumped on {path}"


def test_health_cards_keep_their_size_but_the_latest_upload_time(make_page):
    page, callbacks = make_page(DESKTOP)
    page.goto(PAGES["health"])
    jumps = _load_and_compare(page, callbacks)
    # The latest upload's time wraps onto a second line only the answer can know it needs.
    assert set(jumps) <= {"panel-health-pipeline"}, jumps


def test_charts_grids_and_tiles_keep_their_size_on_a_phone(make_page, sample_lake: SampleLake):
    page, callbacks = make_page(PHONE)
    for path in _drill_down_paths(sample_lake)[:3]:
        callbacks.hold()
        page.goto(path)
        assert _load_and_compare(page, callbacks) == {}, f"cards jumped on {path} (phone)"


def test_a_range_change_reloads_in_cards_of_the_same_size(make_page):
    page, callbacks = make_page(DESKTOP)
    page.goto(PAGES["revenue"])
    assert _load_and_compare(page, callbacks) == {}
    callbacks.hold()
    page.locator("#mc-range-preset").select_option("30d")
    page.wait_for_url("**range=30d*")
    assert _load_and_compare(page, callbacks) == {}, "cards jumped after the range change"
