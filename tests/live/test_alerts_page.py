"""The alerts page: admins acknowledge and resolve; the server refuses anyone else."""

from __future__ import annotations

import json
from types import SimpleNamespace

import dash
import pandas as pd
import pytest
from flask import Flask

from auth.guard import init_auth
from auth.settings import AuthSettings
from dashboard.components import panel
from dashboard.pages import alerts as page
from data_access.alerts import VERSION_ALERTS, get_alert, open_alert, open_alerts
from data_access.service import DataService


def build_app(stores, settings, role: str):
    server = Flask(f"alerts-{role}")
    server.config["SECRET_KEY"] = "test"
    init_auth(server, AuthSettings.from_env({"AUTH_MODE": "dev", "DEV_ROLE": role}), stores.records)
    app = dash.Dash(
        f"alerts-{role}",
        server=server,
        use_pages=True,
        pages_folder="",
        suppress_callback_exceptions=True,
    )
    data = DataService(stores, settings)
    services = SimpleNamespace(
        data=data,
        panels=panel.new_runner(data, floor_seconds=0, figure_cache_items=10),
        settings=None,
    )
    page.register(app, services)
    app.layout = dash.html.Div([dash.page_container])
    client = server.test_client()
    assert client.get("/alerts").status_code == 200
    return client


def dependency(client, output_prefix: str) -> dict:
    for item in client.get("/_dash-dependencies").get_json():
        if item["output"].startswith(output_prefix):
            return item
    raise AssertionError(f"no callback writes {output_prefix}")


def act(client, action: str, alert_id: str):
    """Click an alert's button, as dash-renderer posts it."""
    item = dependency(client, f"..{page.MESSAGE}.children")
    outputs = [
        {"id": page.MESSAGE, "property": "children"},
        *[
            {"id": json.loads(part.rsplit(".", 1)[0]), "property": part.rsplit(".", 1)[1]}
            for part in item["output"].strip(".").split("...")[1:]
        ],
    ]
    button = {"alert": alert_id, "type": page.ACK if action == "ack" else page.RESOLVE}
    clicked = [{"id": button, "property": "n_clicks", "value": 1}]
    body = {
        "output": item["output"],
        "outputs": outputs,
        "inputs": [clicked, []] if action == "ack" else [[], clicked],
        "state": [],
        "changedPropIds": [json.dumps(button, sort_keys=True, separators=(",", ":")) + ".n_clicks"],
    }
    return client.post("/_dash-update-component", json=body)


def poll(client) -> str:
    body = {
        "output": dependency(client, '..{"panel":"alerts-list"')["output"],
        "outputs": [
            {"id": panel.part(page.PANEL, name), "property": prop}
            for name, prop in (
                ("content", "children"),
                ("version", "data"),
                ("badge", "children"),
                ("status", "children"),
            )
        ],
        "inputs": [{"id": panel.part(page.PANEL, "tick"), "property": "data", "value": 1}],
        "state": [
            {"id": panel.part(page.PANEL, "version"), "property": "data", "value": None},
            {"id": panel.CLIENT_ID, "property": "data", "value": "tab"},
            {"id": panel.STATE_ID, "property": "data", "value": None},
        ],
        "changedPropIds": [],
    }
    response = client.post("/_dash-update-component", json=body)
    assert response.status_code == 200
    return response.get_data(as_text=True)


@pytest.fixture
def alert(local_stores):
    return open_alert(
        local_stores.records,
        rule="cpu",
        subject="web-1",
        severity="warning",
        message="CPU 97% over 5 min",
        value=97.0,
        threshold=90.0,
        now=1_800_000_000.0,
    )


def test_a_viewer_sees_alerts_but_no_buttons_and_is_refused(local_stores, local_settings, alert):
    client = build_app(local_stores, local_settings, "viewer")
    listing = poll(client)
    assert "CPU 97% over 5 min" in listing
    assert page.ACK not in listing and page.RESOLVE not in listing

    for action in ("ack", "resolve"):
        response = act(client, action, alert.alert_id)
        assert response.status_code == 200
        assert "Only admins may" in response.get_data(as_text=True)
    unchanged = get_alert(local_stores.records, alert.alert_id)
    assert unchanged.status == "open" and unchanged.acknowledged_at is None
    refusals = [
        doc for _, doc in local_stores.records.scan("audit") if "refused" in json.dumps(doc)
    ]
    assert len(refusals) == 2


def test_an_admin_acknowledges_then_resolves(local_stores, local_settings, alert):
    client = build_app(local_stores, local_settings, "admin")
    listing = poll(client)
    assert page.ACK in listing and page.RESOLVE in listing

    response = act(client, "ack", alert.alert_id)
    answer = response.get_json()["response"]
    assert "acknowledged" in json.dumps(answer[page.MESSAGE])
    content = json.dumps(panel.part(page.PANEL, "content"), sort_keys=True, separators=(",", ":"))
    refreshed = json.dumps(answer[content])  # the list comes back read afresh
    assert page.ACK not in refreshed and page.RESOLVE in refreshed
    acknowledged = get_alert(local_stores.records, alert.alert_id)
    assert acknowledged.acknowledged_by == "dev@localhost"
    assert local_stores.state.get(VERSION_ALERTS) is not None

    act(client, "resolve", alert.alert_id)
    resolved = get_alert(local_stores.records, alert.alert_id)
    assert resolved.status == "resolved" and resolved.resolved_by == "dev@localhost"
    assert open_alerts(local_stores.records) == {}
    events = [doc["event"] for _, doc in local_stores.records.scan("audit")]
    assert "alert-ack" in events and "alert-resolve" in events


def test_rows_render_open_and_resolved_alerts():
    assert "No alerts." in json.dumps(page.alert_rows(pd.DataFrame(), admin=True), default=str)
    frame = pd.DataFrame(
        [
            {
                "alert_id": "1",
                "rule": "disk",
                "subject": "web-2",
                "severity": "error",
                "status": "resolved",
                "message": "disk 97%",
                "opened_at": 1_800_000_000.0,
                "resolved_by": "auto",
                "acknowledged_by": None,
            }
        ]
    )
    (row,) = page.alert_rows(frame, admin=True)
    text = json.dumps(row.to_plotly_json(), default=str)
    assert "resolved by auto" in text
    assert page.RESOLVE not in text  # nothing to do on a resolved alert


def test_a_window_lists_every_open_alert_and_only_the_recent_others(local_stores):
    from data_access.alerts import AlertsQuery, resolve_alert

    now = 1_800_000_000.0
    hour = 3600.0

    def opened(rule: str, at: float) -> str:
        alert = open_alert(
            local_stores.records,
            rule=rule,
            subject="web-1",
            severity="warning",
            message=rule,
            value=1.0,
            threshold=0.5,
            now=at,
        )
        return alert.alert_id

    opened("old-open", now - 5 * hour)
    resolve_alert(
        local_stores.records,
        local_stores.state,
        opened("old-gone", now - 5 * hour),
        by="auto",
        now=now - 4 * hour,
    )
    resolve_alert(
        local_stores.records,
        local_stores.state,
        opened("new-gone", now - 0.5 * hour),
        by="auto",
        now=now - 0.2 * hour,
    )

    def rules(state: dict | None) -> set[str]:
        return set(page.alerts_query(now, state).load(local_stores)["rule"])

    assert rules({"window": "1h"}) == {"old-open", "new-gone"}
    assert rules({"window": "6h"}) == {"old-open", "old-gone", "new-gone"}
    assert rules(None) == rules({"window": "24h"}) == rules({"window": "6h"})
    assert set(AlertsQuery().load(local_stores)["rule"]) == rules({"window": "6h"})
