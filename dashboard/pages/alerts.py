"""Alerts: what fired, what is still open, and (for admins) acknowledge and resolve.

The list polls like every panel (version ``version:alerts`` -> no_update when unchanged).
Acknowledge and resolve are Dash callbacks whose outputs carry the ``alerts-admin-`` prefix;
the callback itself checks ``current_user().can("admin")`` and refuses anyone else, so a
crafted request from a viewer changes nothing (``protect_dash_outputs`` with that prefix adds
an HTTP 403 in front of it).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import dash
import dash_bootstrap_components as dbc
import pandas as pd
from dash import ALL, Input, Output, ctx, dcc, html

from auth.guard import audit, current_user
from dashboard.components.controls import page_header
from dashboard.components.panel import STATE_ID, panel_callback, panel_card, part
from dashboard.components.url_state import WINDOW_PRESETS, parse_window
from dashboard.timestamps import utc_text
from data_access.alerts import AlertsQuery, acknowledge_alert, resolve_alert

if TYPE_CHECKING:
    from dashboard.app import Services

log = logging.getLogger(__name__)

PATH = "/alerts"
PANEL = "alerts-list"
ACK = "alerts-admin-ack"
RESOLVE = "alerts-admin-resolve"
MESSAGE = "alerts-admin-message"
ADMIN_PREFIX = "alerts-admin-"
SEVERITY_COLOURS = {"error": "danger", "warning": "warning", "info": "info"}


def _when(epoch: float | None) -> str:
    if epoch is None or pd.isna(epoch):
        return ""
    return utc_text(epoch)


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def alert_rows(frame: pd.DataFrame, *, admin: bool) -> list[Any]:
    """Pure: the table body for the alerts in ``frame`` (AlertsQuery's columns)."""
    if frame.empty:
        return [html.Tr(html.Td("No alerts.", colSpan=7, className="text-muted"))]
    rows = []
    for alert in frame.to_dict("records"):
        is_open = alert["status"] == "open"
        acknowledged = _text(alert.get("acknowledged_by"))
        actions: list[Any] = []
        if admin and is_open:
            if not acknowledged:
                actions.append(
                    dbc.Button(
                        "Acknowledge",
                        id={"type": ACK, "alert": alert["alert_id"]},
                        size="sm",
                        color="secondary",
                        outline=True,
                        className="me-1",
                    )
                )
            actions.append(
                dbc.Button(
                    "Resolve",
                    id={"type": RESOLVE, "alert": alert["alert_id"]},
                    size="sm",
                    color="success",
                    outline=True,
                )
            )
        if is_open:
            state = f"open, acknowledged by {acknowledged}" if acknowledged else "open"
        else:
            state = f"resolved by {_text(alert.get('resolved_by'))}"
        rows.append(
            html.Tr(
                [
                    html.Td(
                        dbc.Badge(
                            alert["severity"],
                            color=SEVERITY_COLOURS.get(alert["severity"], "secondary"),
                        )
                    ),
                    html.Td(html.Code(alert["rule"])),
                    html.Td(alert["subject"]),
                    html.Td(alert["message"]),
                    html.Td(_when(alert["opened_at"])),
                    html.Td(state, className="text-nowrap"),
                    html.Td(actions, className="text-nowrap"),
                ],
                className="" if is_open else "text-muted",
                id=f"alert-row-{alert['alert_id']}",
            )
        )
    return rows


def pending_rows() -> list[Any]:
    """The table body until the first answer: one shimmering row, as tall as "No alerts."."""
    bar = html.Span("\u00a0", className="mc-skeleton mc-skeleton-row")
    return [html.Tr(html.Td(bar, colSpan=7))]


def alerts_table(rows: list[Any]) -> Any:
    header = html.Thead(
        html.Tr(
            [
                html.Th(name)
                for name in ("Severity", "Rule", "Subject", "What", "Opened", "State", "")
            ]
        )
    )
    return dbc.Table(
        [header, html.Tbody(rows)], hover=True, responsive=True, className="mb-0 align-middle"
    )


# Alerts are listed in windows that move in whole minutes, so polls share a cache key.
WINDOW_STEP_SECONDS = 60


def alerts_query(now: float, state: dict | None) -> AlertsQuery:
    """Every open alert, and the others opened in the view's window."""
    hours = parse_window((state or {}).get("window"))[1]
    step_end = int(now // WINDOW_STEP_SECONDS) * WINDOW_STEP_SECONDS
    return AlertsQuery(since=float(step_end - hours * 3600))


def layout(**query: str) -> Any:
    window, _hours, problem = parse_window(query.get("window"))
    return html.Div(
        [
            dcc.Store(id=STATE_ID, data={"window": window}),
            page_header(
                "Alerts",
                None,
                subtitle="Open alerts first; newest first",
                window=window,
                problems=(problem,) if problem else (),
            ),
            html.Div(id=MESSAGE),
            panel_card(
                PANEL,
                f"Alerts \u00b7 open, or opened in the {WINDOW_PRESETS[window].lower()}",
                html.Div(alerts_table(pending_rows()), id=part(PANEL, "content")),
                kind="tiles",
                subtitle="Rules run every minute; an alert resolves itself when its cause clears",
            ),
        ]
    )


def register(app: dash.Dash, services: Services) -> None:
    runner = services.panels
    stores = services.data.stores
    dash.register_page("alerts", path=PATH, name="Alerts", title="Alerts", layout=layout, order=25)

    @panel_callback(app, runner, PANEL, "tiles")
    def alerts_list(_tick, shown, client, state):
        user = current_user()
        admin = bool(user and user.can("admin"))

        def build(frame: pd.DataFrame) -> Any:
            return alerts_table(alert_rows(frame, admin=admin))

        query = alerts_query(time.time(), state)
        answer = runner.answer(PANEL, query, shown, client, build, build_key=(admin,))
        return answer.outputs()

    @app.callback(
        Output(MESSAGE, "children"),
        Output(part(PANEL, "content"), "children", allow_duplicate=True),
        Output(part(PANEL, "version"), "data", allow_duplicate=True),
        Input({"type": ACK, "alert": ALL}, "n_clicks"),
        Input({"type": RESOLVE, "alert": ALL}, "n_clicks"),
        prevent_initial_call=True,
    )
    def act(_acks, _resolves):
        trigger = ctx.triggered_id
        if not isinstance(trigger, dict) or not any(t.get("value") for t in ctx.triggered):
            return dash.no_update, dash.no_update, dash.no_update
        action = "acknowledge" if trigger["type"] == ACK else "resolve"
        return perform(stores, action, trigger["alert"])


def perform(stores, action: str, alert_id: str) -> tuple[Any, Any, Any]:
    """Acknowledge or resolve for an admin; refuse anyone else.

    Returns the callback's outputs: a message, and after a change the list read afresh (the
    data service memoises versions for about a second, too long for a click's answer).
    """
    user = current_user()
    if user is None or not user.can("admin"):
        who = user.email if user else "anonymous"
        log.warning("refused alert %s of %s by %s", action, alert_id, who)
        audit("refused", what=f"alert-{action}", alert=alert_id)
        message = dbc.Alert(
            f"Only admins may {action} alerts.", color="danger", dismissable=True, className="py-2"
        )
        return message, dash.no_update, dash.no_update
    change = acknowledge_alert if action == "acknowledge" else resolve_alert
    try:
        alert = change(stores.records, stores.state, alert_id, by=user.email, now=time.time())
    except KeyError:
        message = dbc.Alert("That alert no longer exists.", color="warning", dismissable=True)
        return message, dash.no_update, dash.no_update
    audit("alert-ack" if action == "acknowledge" else "alert-resolve", alert=alert_id)
    done = "acknowledged" if action == "acknowledge" else "resolved"
    message = dbc.Alert(
        f"{alert.rule} on {alert.subject} {done}.",
        color="success",
        dismissable=True,
        duration=4000,
        className="py-2",
    )
    fresh = alerts_table(alert_rows(AlertsQuery().load(stores), admin=True))
    # Forget the shown version, so the next poll replaces this list through the usual path.
    return message, fresh, None
