"""POST /poll through Flask's test client, over a tiny lake built by the real pipeline: which
panels it reports, the role check before any version, the per-tab floor, the 204 it answers
for an unchanged tick, and that it never counts as the user's activity."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from flask import Flask

from auth.guard import PANEL_POLL_PATH
from dashboard import create_app
from dashboard.components.poll_api import PanelChecks
from dashboard.components.url_state import parse_view_state
from data_access import layout
from data_access.alerts import VERSION_ALERTS, AlertsQuery
from data_access.factory import build_stores
from data_access.queries import DailyBusinessQuery, FleetDailyQuery
from data_access.settings import DataSettings
from pipeline.events import compact_events
from pipeline.generate import customer_id, generate
from pipeline.process import drain
from pipeline.rollup import rollup_all

TODAY = dt.datetime.now(dt.UTC).date()
REVENUE, ALERTS, TREND = "overview-revenue", "overview-alerts", "customer-trend"


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> DataSettings:
    root = tmp_path_factory.mktemp("panel-poll")
    settings = DataSettings(lake_root=root / "lake", state_db=root / "state.sqlite")
    stores = build_stores(settings)
    generate(stores.lake, queue=stores.queue, customers=2, days=2, seed=3, end_date=TODAY, hosts=0)
    drain(stores)
    compact_events(stores)
    rollup_all(stores)
    return settings


def make_app(lake: DataSettings, **env: str) -> Flask:
    return create_app(
        {
            "LAKE_ROOT": str(lake.lake_root),
            "STATE_DB": str(lake.state_db),
            "SECRET_KEY": "test",
            "REFRESH_CHOICES_MS": "60000",
            **env,
        }
    )


@pytest.fixture
def no_floor(lake: DataSettings) -> Iterator:
    # No floor and no version memo: every poll reads the versions as they are.
    server = make_app(lake, REFRESH_FLOOR_MS="0", VERSION_MEMO_SECONDS="0")
    yield server, server.test_client()


def view_state(**query: str) -> dict:
    return parse_view_state(query, TODAY).to_store()


def poll(client, panels: dict[str, str | None], *, tab: str = "tab-1", state=None):
    body = {"tab": tab, "state": state if state is not None else view_state(), "panels": panels}
    return client.post(PANEL_POLL_PATH, json=body)


def version_of(server: Flask, query) -> str:
    return server.extensions["mission_control"].data.version(query)


def test_every_panel_of_every_page_has_a_check(no_floor):
    server, _ = no_floor
    checks = PanelChecks.of(server)
    for panel in (REVENUE, ALERTS, TREND, "fleet-activity", "health-status", "health-host-live"):
        assert panel in checks, panel


def test_an_unchanged_tick_is_an_empty_204_without_document_headers(no_floor):
    server, client = no_floor
    view = parse_view_state({}, TODAY)
    shown = {
        REVENUE: version_of(server, DailyBusinessQuery(view.start, view.end)),
        ALERTS: version_of(server, AlertsQuery()),
    }

    answer = poll(client, shown)

    assert answer.status_code == 204
    assert answer.get_data() == b""
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Cache-Control"] == "no-store"
    for document_header in ("Content-Security-Policy", "X-Frame-Options", "Content-Type"):
        assert document_header not in answer.headers


def test_only_the_panels_whose_version_changed_are_reported(no_floor, lake: DataSettings):
    server, client = no_floor
    view = parse_view_state({}, TODAY)
    shown = {
        REVENUE: version_of(server, DailyBusinessQuery(view.start, view.end)),
        ALERTS: version_of(server, AlertsQuery()),
    }
    build_stores(lake).state.put(VERSION_ALERTS, "bumped-by-the-test")

    answer = poll(client, shown)

    assert answer.status_code == 200
    assert answer.get_json() == {"changed": [ALERTS]}
    assert answer.headers["Cache-Control"] == "no-store"


def test_a_panel_that_shows_nothing_yet_is_reported_unless_it_has_no_selection(no_floor):
    _, client = no_floor
    # No customer chosen: the drill-down panel has nothing to show, so nothing is new.
    assert poll(client, {REVENUE: None, TREND: None}).get_json() == {"changed": [REVENUE]}


def test_a_viewer_is_refused_an_operator_panel_and_learns_nothing_of_it(lake: DataSettings):
    client = make_app(lake, REFRESH_FLOOR_MS="0", DEV_ROLE="viewer").test_client()
    state = view_state(customer=customer_id(0))

    answer = poll(client, {TREND: "an old version", REVENUE: None}, state=state)

    assert answer.status_code == 200
    assert answer.get_json() == {"changed": [REVENUE], "forbidden": [TREND]}


def test_an_operator_polls_the_same_panel(lake: DataSettings):
    client = make_app(lake, REFRESH_FLOOR_MS="0", DEV_ROLE="operator").test_client()
    state = view_state(customer=customer_id(0))

    answer = poll(client, {TREND: "an old version"}, state=state)

    assert answer.get_json() == {"changed": [TREND]}


def test_unknown_panels_are_named_so_the_page_stops_asking(no_floor):
    _, client = no_floor
    assert poll(client, {"no-such-panel": None}).get_json() == {"unknown": ["no-such-panel"]}


def test_the_floor_holds_per_tab_and_panel(lake: DataSettings):
    client = make_app(lake).test_client()  # the floor: most of the 60 s refresh

    first = poll(client, {REVENUE: None}, tab="one")
    again = poll(client, {REVENUE: None}, tab="one")
    other_tab = poll(client, {REVENUE: None}, tab="two")
    other_panel = poll(client, {ALERTS: None}, tab="one")

    assert first.get_json() == {"changed": [REVENUE]}
    assert again.status_code == 204  # inside the floor nothing is new, whatever the data did
    assert other_tab.get_json() == {"changed": [REVENUE]}
    assert other_panel.get_json() == {"changed": [ALERTS]}


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"panels": {}},  # no tab
        {"tab": "t", "panels": []},
        {"tab": "t", "panels": {"overview-revenue": 3}},
        {"tab": "t", "panels": {f"p{n}": None for n in range(65)}},
        {"tab": "t", "panels": {}, "state": "not an object"},
    ],
)
def test_a_malformed_poll_is_refused(no_floor, body):
    _, client = no_floor
    assert client.post(PANEL_POLL_PATH, json=body).status_code == 400


def test_a_90_day_fleet_view_polls_with_the_version_it_shows(no_floor, lake: DataSettings):
    # A fleet panel's version joins one version per date: 90 rolled-up dates are ~1.6 KB.
    server, client = no_floor
    view = parse_view_state({"range": "90d"}, TODAY)
    state = build_stores(lake).state
    for day in range((view.end - view.start).days + 1):
        date = (view.start + dt.timedelta(days=day)).isoformat()
        state.put(layout.screen_time_date_version(date), "1796606825.778001")
    shown = version_of(server, FleetDailyQuery(view.start, view.end))
    assert len(shown) > 1000

    answer = poll(client, {"fleet-activity": shown}, state=view.to_store())

    assert answer.status_code == 204
