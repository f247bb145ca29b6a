"""The operator emulator sends what Chromium sends: a recording of a settled page, replayed
for the tab, versions and tick of another recorded tick, gives that tick's requests byte for
byte as JSON; and the bodies learnt from the app's dependencies (what the load tests send)
equal the recorded ones."""

from __future__ import annotations

import json
import time

import pytest
import requests

from data_access.alerts import VERSION_ALERTS
from data_access.layout import VERSION_BUSINESS_ROLLUP
from devtools.operators import UPDATE_PATH, PageSpec, PageTraffic, page_content, render_body
from devtools.recording import PageRecording, record_page
from tests.plugins.browser import DashboardServer, SampleLake

pytestmark = pytest.mark.browser


def _learned(server: DashboardServer, url_path: str) -> PageTraffic:
    dependencies = requests.get(f"{server.url}/_dash-dependencies", timeout=30).json()
    path, _, query = url_path.partition("?")
    render = render_body(
        PageSpec(url_path, "ours", path, f"?{query}" if query else ""), dependencies
    )
    routed = requests.post(
        f"{server.url}{UPDATE_PATH}",
        data=render,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    return PageTraffic.learned(
        url_path, dependencies, page_content(routed.status_code, routed.content)
    )


def _changed_ticks(recording: PageRecording) -> list[list]:
    return [tick for tick in recording.ticks if tick[0].status == 200 and len(tick) > 1]


def test_a_replayed_tick_is_what_chromium_sent(
    browser, live_server: DashboardServer, sample_lake: SampleLake
):
    state = sample_lake.stores().state

    def change() -> None:
        stamp = f"{time.time():.6f}"
        state.put(VERSION_BUSINESS_ROLLUP, stamp)
        state.put(VERSION_ALERTS, stamp)

    # In the session's browser: Playwright's sync API runs one at a time.
    recording = record_page(live_server.url, "/", change=change, browser=browser)
    traffic = PageTraffic.from_recording(recording)
    learned = _learned(live_server, "/")

    # The poll: the same body for the tab and versions Chromium sent.
    for tick in recording.ticks:
        sent = tick[0].body
        assert json.loads(traffic.poll_request(sent["tab"], sent["panels"]).body) == sent
    assert learned.panels == list(recording.ticks[-1][0].body["panels"])

    # The refreshes of a changed tick: replayed from the recording (its templates come from
    # the last changed tick) and learnt, each equal to what Chromium sent in every tick.
    changed = _changed_ticks(recording)
    assert changed, [[(r.path, r.status) for r in tick] for tick in recording.ticks]
    compared = 0
    for tick in changed:
        for entry in tick[1:]:
            tick_input = entry.body["inputs"][0]
            if tick_input["id"].get("type") != "mc-tick":
                continue
            panel = tick_input["id"]["panel"]
            tab = next(s["value"] for s in entry.body["state"] if s["id"] == "mc-client")
            version = next(s.get("value") for s in entry.body["state"] if s["id"].__class__ is dict)
            for source in (traffic, learned):
                (replayed,) = source.refresh_requests(panel, tab, tick_input["value"], version)
                assert replayed.path.split("?")[0] == entry.path.split("?")[0]
                assert json.loads(replayed.body) == entry.body, panel
            compared += 1
    assert compared >= 4  # every Overview panel moved with its data
