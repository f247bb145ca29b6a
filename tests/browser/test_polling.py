"""Polling in a real browser: panels refresh, unchanged data costs nothing, hidden tabs rest,
and new data shows at the next refresh."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from playwright.sync_api import expect

from data_access import layout
from data_access.queries import FleetDailyQuery
from tests.plugins.browser import PAGES, REFRESH_MS, DashTraffic, SampleLake, wait_for_panels

pytestmark = pytest.mark.browser

SET_VISIBILITY = """(hidden) => {
    Object.defineProperty(document, "visibilityState", {
        configurable: true, get: () => (hidden ? "hidden" : "visible"),
    });
    Object.defineProperty(document, "hidden", {configurable: true, get: () => hidden});
    document.dispatchEvent(new Event("visibilitychange"));
}"""


def answered(calls) -> list:
    return [call for call in calls if call.status == 200]


def test_refresh_updates_a_live_panel_and_skips_unchanged_data(page):
    traffic = DashTraffic(page)
    page.goto(PAGES["health"])
    wait_for_panels(page)
    mark = time.monotonic()
    page.wait_for_timeout(4 * REFRESH_MS + 500)

    # A live panel (this machine's figures) gets a new answer at every refresh.
    assert len(answered(traffic.since(mark, "health-host-live"))) >= 2
    # A lake panel's data version has not changed: the page's poll learns that, so its Dash
    # callback is not called (at most once: the metrics window moves every five minutes).
    assert len(traffic.since(mark, "health-host-history")) <= 1


def test_a_hidden_tab_stops_polling_and_resumes_when_shown(page):
    traffic = DashTraffic(page)
    page.goto(PAGES["health"])
    wait_for_panels(page)
    before = time.monotonic()
    page.wait_for_timeout(2 * REFRESH_MS + 200)
    assert traffic.since(before, "health-host-live"), "the page was not polling to begin with"

    page.evaluate(SET_VISIBILITY, True)
    page.wait_for_timeout(REFRESH_MS)  # answers already on their way arrive
    hidden = time.monotonic()
    page.wait_for_timeout(3 * REFRESH_MS + 500)
    assert traffic.since(hidden) == []

    page.evaluate(SET_VISIBILITY, False)
    shown = time.monotonic()
    page.wait_for_timeout(2 * REFRESH_MS)
    assert answered(traffic.since(shown, "health-host-live"))


def _write_new_customer_upload(lake: SampleLake) -> str:
    """A valid upload for the end date from a customer the sample does not have yet."""
    from pipeline.generate import customer_profile, screen_time_upload

    stores = lake.stores()
    for number in range(lake.customers, lake.customers + 50):
        profile = customer_profile(lake.seed, number, lake.end_date)
        key = layout.raw_upload_key(profile.customer_id, lake.end_date.isoformat())
        data = screen_time_upload(lake.seed, profile, lake.end_date)
        if data is None or stores.lake.exists(key) or not json.loads(data)["sessions"]:
            continue
        stores.lake.write_bytes(key, data)
        stores.queue.send([key])
        return profile.customer_id
    raise AssertionError("no new customer with sessions on the end date")


def test_a_new_upload_shows_at_the_next_refresh(page, sample_lake: SampleLake):
    from pipeline.process import drain
    from pipeline.rollup import rollup_all

    query = FleetDailyQuery(sample_lake.end_date - dt.timedelta(days=6), sample_lake.end_date)
    stores = sample_lake.stores()
    page.goto(f"{PAGES['screen-time']}?range=7d")
    wait_for_panels(page)
    active = page.locator("#tile-active .mc-tile-value")
    before = query.load(stores)
    expect(active).to_have_text(f"{int(before['active_customers'].iloc[-1]):,}")

    _write_new_customer_upload(sample_lake)
    summary = drain(stores)
    assert summary.processed == 1
    rollup_all(stores)
    after = query.load(stores)
    expected = f"{int(after['active_customers'].iloc[-1]):,}"
    assert after["active_customers"].iloc[-1] == before["active_customers"].iloc[-1] + 1

    # The panel's data version changed: the next poll (or the one after) shows it.
    expect(active).to_have_text(expected, timeout=4 * REFRESH_MS + 2000)
