"""The unchanged-poll shortcut: a panel poll whose data did not change is answered 204 before
Dash's callback dispatch; every other request still goes through Dash, and the panel function
runs once per request either way."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import dash
import pytest

from dashboard import create_app
from dashboard.components.poll import PanelRunner
from dashboard.components.url_state import parse_view_state
from data_access.factory import build_stores
from data_access.settings import DataSettings
from pipeline.events import compact_events
from pipeline.generate import generate
from pipeline.process import drain
from pipeline.rollup import rollup_all

TODAY = dt.datetime.now(dt.UTC).date()
REVENUE = "overview-revenue"


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> DataSettings:
    root = tmp_path_factory.mktemp("poll-shortcut")
    settings = DataSettings(lake_root=root / "lake", state_db=root / "state.sqlite")
    stores = build_stores(settings)
    generate(stores.lake, queue=stores.queue, customers=2, days=2, seed=3, end_date=TODAY, hosts=0)
    drain(stores)
    compact_events(stores)
    rollup_all(stores)
    return settings


@pytest.fixture
def client(lake: DataSettings) -> Iterator:
    server = create_app(
        {
            "LAKE_ROOT": str(lake.lake_root),
            "STATE_DB": str(lake.state_db),
            "SECRET_KEY": "test",
            "REFRESH_CHOICES_MS": "60000",
        }
    )
    test_client = server.test_client()
    assert test_client.get("/").status_code == 200
    yield test_client


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How often Dash dispatched a callback and how often a panel's answer was computed."""
    seen = {"dash": 0, "answer": 0}
    dispatch = dash.Dash._initialize_context
    answer = PanelRunner.answer

    def counting_dispatch(self, body):
        seen["dash"] += 1
        return dispatch(self, body)

    def counting_answer(self, *args, **kwargs):
        seen["answer"] += 1
        return answer(self, *args, **kwargs)

    monkeypatch.setattr(dash.Dash, "_initialize_context", counting_dispatch)
    monkeypatch.setattr(PanelRunner, "answer", counting_answer)
    return seen


def _id(panel: str, name: str) -> dict[str, str]:
    return {"panel": panel, "type": f"mc-{name}"}


def _poll(
    client,
    *,
    version: str | None,
    tab: str,
    output: str | None = None,
    panel: str = REVENUE,
    query: dict[str, str] | None = None,
):
    outputs = [
        (_id(panel, "figure"), "data"),
        (_id(panel, "version"), "data"),
        (_id(panel, "badge"), "children"),
        (_id(panel, "status"), "children"),
    ]
    names = [f"{json.dumps(i, sort_keys=True, separators=(',', ':'))}.{p}" for i, p in outputs]
    view = parse_view_state(query or {}, TODAY)
    state = [
        {"id": _id(panel, "version"), "property": "data", "value": version},
        {"id": "mc-client", "property": "data", "value": tab},
        {"id": "mc-state", "property": "data", "value": view.to_store()},
    ]
    body = {
        "output": output or ".." + "...".join(names) + "..",
        "outputs": [{"id": i, "property": p} for i, p in outputs],
        "inputs": [{"id": _id(panel, "tick"), "property": "data", "value": 1}],
        "changedPropIds": [],
        "state": state,
    }
    return client.post("/_dash-update-component", json=body)


def _version(response) -> str:
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    answer = response.get_json()["response"]
    return answer[json.dumps(_id(REVENUE, "version"), sort_keys=True, separators=(",", ":"))][
        "data"
    ]


def test_an_unchanged_poll_is_answered_without_dash_dispatch(client, counts):
    version = _version(_poll(client, version=None, tab="first"))
    before = dict(counts)

    unchanged = _poll(client, version=version, tab="second")

    assert unchanged.status_code == 204
    assert unchanged.get_data() == b""
    assert counts["dash"] == before["dash"]
    assert counts["answer"] == before["answer"] + 1


def test_a_changed_poll_goes_through_dash_and_runs_the_panel_once(client, counts):
    response = _poll(client, version="an-older-version", tab="changed")

    # Run twice, the second run would meet the tab's poll floor and answer 204.
    assert _version(response) != "an-older-version"
    assert counts == {"dash": 1, "answer": 1}


def test_a_body_naming_no_panel_is_left_to_dash(client, counts):
    response = _poll(client, version="v", tab="odd", output="..not-a-panel.data..")

    # Not the shortcut's to answer; the security hooks refuse an output no callback has.
    assert response.status_code == 400
    assert counts["answer"] == 0


def test_the_guard_still_refuses_before_the_shortcut(lake: DataSettings, counts):
    server = create_app(
        {
            "LAKE_ROOT": str(lake.lake_root),
            "STATE_DB": str(lake.state_db),
            "SECRET_KEY": "test",
            "DEV_ROLE": "viewer",
        }
    )
    client = server.test_client()
    # A complete poll of a customer panel: the shortcut would answer it if it ran first.
    response = _poll(
        client, version="v", tab="viewer", panel="customer-trend", query={"customer": "c0000001"}
    )

    assert response.status_code == 403
    assert counts["answer"] == 0
