"""The panel poll in a real browser: one POST /poll per tab per tick; a data change reaches
exactly the panels that show it, at the next poll; a hidden tab sends nothing; a failed poll
(5xx or no answer) shows "Offline" and polling carries on."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

import pytest
from playwright.sync_api import expect

from data_access.alerts import VERSION_ALERTS
from data_access.layout import VERSION_BUSINESS_ROLLUP
from tests.plugins.browser import PAGES, SampleLake, dom_id, wait_for_panels

pytestmark = pytest.mark.browser

POLL_PATH = "/poll"
CALLBACK_PATH = "/_dash-update-component"
OVERVIEW_PANELS = {
    VERSION_BUSINESS_ROLLUP: {"overview-kpis", "overview-revenue", "overview-products"},
    VERSION_ALERTS: {"overview-alerts"},
}
SET_VISIBILITY = """(hidden) => {
    Object.defineProperty(document, "visibilityState", {
        configurable: true, get: () => (hidden ? "hidden" : "visible"),
    });
    Object.defineProperty(document, "hidden", {configurable: true, get: () => hidden});
    document.dispatchEvent(new Event("visibilitychange"));
}"""


@dataclass
class Sent:
    """One request the page made: its path, the body it sent, its status once answered."""

    path: str
    body: dict | None
    status: int | None = None
    answer: dict | None = None


@dataclass
class Requests:
    """Every request a page sends after it is attached, in order, with its answer."""

    sent: list[Sent] = field(default_factory=list)

    def attach(self, page) -> Requests:
        page.on("request", self._on_request)
        page.on("response", self._on_response)
        return self

    def _on_request(self, request) -> None:
        path = re.sub(r"^https?://[^/]+", "", request.url).split("?")[0]
        try:
            body = request.post_data_json
        except ValueError:
            body = None
        entry = Sent(path, body if isinstance(body, dict) else None)
        request._mc_sent = entry  # the response handler finds its entry
        self.sent.append(entry)

    def _on_response(self, response) -> None:
        entry = getattr(response.request, "_mc_sent", None)
        if entry is None:
            return
        entry.status = response.status
        if entry.path == POLL_PATH and response.status == 200:
            entry.answer = response.json()

    def mark(self) -> int:
        return len(self.sent)

    def since(self, mark: int, path: str | None = None) -> list[Sent]:
        return [entry for entry in self.sent[mark:] if path is None or entry.path == path]


def callback_panel(entry: Sent) -> str | None:
    """The panel whose tick fired a Dash callback request."""
    inputs = (entry.body or {}).get("inputs") or [{}]
    component = inputs[0].get("id") if isinstance(inputs[0], dict) else None
    return component.get("panel") if isinstance(component, dict) else None


def wait_for_polls(page, count: int) -> list:
    """Until the page has sent ``count`` more polls; their requests, in order."""
    polls = []
    for _ in range(count):
        with page.expect_request(lambda request: request.url.endswith(POLL_PATH)) as sent:
            pass
        polls.append(sent.value)
    return polls


def settled_overview(page) -> Requests:
    requests = Requests().attach(page)
    page.goto(PAGES["overview"])
    wait_for_panels(page)
    # Settled: a poll answered 204, i.e. no panel has anything new.
    while True:
        [request] = wait_for_polls(page, 1)
        if request.response().status == 204:
            return requests


def test_a_settled_page_sends_one_poll_per_tick_and_nothing_else(page):
    requests = settled_overview(page)
    mark = requests.mark()

    wait_for_polls(page, 4)
    last = wait_for_polls(page, 1)[0]
    last.response()  # its answer is in

    sent = requests.since(mark)
    assert [entry.path for entry in sent] == [POLL_PATH] * 5
    assert [entry.status for entry in sent] == [204] * 5
    # The one poll names every panel on the page, with the version it shows.
    body = sent[-1].body or {}
    assert set(body["panels"]) == set().union(*OVERVIEW_PANELS.values())
    assert all(isinstance(version, str) for version in body["panels"].values())
    assert body["tab"] and body["state"]


@pytest.mark.parametrize("name", list(OVERVIEW_PANELS))
def test_a_data_change_refreshes_exactly_its_panels_at_the_next_poll(
    page, sample_lake: SampleLake, name: str
):
    requests = settled_overview(page)
    version = f"bumped-{uuid.uuid4().hex[:8]}"
    mark = requests.mark()
    sample_lake.stores().state.put(name, version)

    changed_panels = OVERVIEW_PANELS[name]
    for panel in changed_panels:
        expect(page.locator(f"{dom_id(panel, 'badge')} .mc-badge")).to_have_attribute(
            "title", re.compile(f"data version {version}")
        )

    polls = requests.since(mark, POLL_PATH)
    reporting = [entry for entry in polls if entry.answer]
    # The first poll that saw the change named exactly these panels; only the version memo
    # (0.2 s here) can hide a change from the first poll after it.
    assert reporting and set(reporting[0].answer["changed"]) == changed_panels
    assert polls.index(reporting[0]) <= 1
    refreshed = [callback_panel(entry) for entry in requests.since(mark, CALLBACK_PATH)]
    assert sorted(refreshed) == sorted(changed_panels)


def test_a_hidden_tab_sends_nothing_and_polls_again_when_shown(page):
    requests = settled_overview(page)
    freshness = page.locator("#mc-freshness")

    page.evaluate(SET_VISIBILITY, True)
    expect(freshness).to_have_attribute("data-state", "paused")
    hidden = requests.mark()
    # Five refresh intervals (1 s each) pass by the indicator's own clock.
    expect(freshness).to_have_text(re.compile(r"updated ([5-9]|\d\d+) s ago"), timeout=15_000)
    assert requests.since(hidden) == []

    page.evaluate(SET_VISIBILITY, False)
    wait_for_polls(page, 2)
    expect(freshness).to_have_attribute("data-state", "live")


@pytest.mark.parametrize("failure", ["503", "no answer"])
def test_polling_resumes_after_a_failed_poll(page, failure: str):
    requests = settled_overview(page)
    freshness = page.locator("#mc-freshness")

    def fail(route) -> None:
        if failure == "503":
            route.fulfill(status=503, body="")
        else:
            route.abort("connectionreset")

    page.route(f"**{POLL_PATH}", fail)
    expect(freshness).to_have_attribute("data-state", "offline")
    expect(freshness).to_contain_text("Offline")
    failed = requests.mark()
    wait_for_polls(page, 2)  # the page keeps asking while the server fails
    page.unroute(f"**{POLL_PATH}", fail)

    answered = requests.mark()
    wait_for_polls(page, 2)
    expect(freshness).to_have_attribute("data-state", "live")
    expect(freshness).to_have_text(re.compile(r"^Updated "))
    assert len(requests.since(failed, POLL_PATH)) >= 4
    assert {entry.status for entry in requests.since(answered, POLL_PATH)} <= {200, 204}


def test_a_panel_refresh_that_failed_is_fired_again(page, sample_lake: SampleLake):
    requests = settled_overview(page)
    refused: list[str] = []

    def fail_once(route) -> None:
        if not refused:
            refused.append(route.request.url)
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route(f"**{CALLBACK_PATH}*", fail_once)
    version = f"bumped-{uuid.uuid4().hex[:8]}"
    mark = requests.mark()
    sample_lake.stores().state.put(VERSION_ALERTS, version)

    badge = page.locator(f"{dom_id('overview-alerts', 'badge')} .mc-badge")
    expect(badge).to_have_attribute("title", re.compile(f"data version {version}"))
    refreshes = [
        entry
        for entry in requests.since(mark, CALLBACK_PATH)
        if callback_panel(entry) == "overview-alerts"
    ]
    assert refused and len(refreshes) >= 2  # the failed one, then the one that showed it
