"""Overview (home): the business KPIs against the previous period, daily revenue, top products,
and the open alerts by severity."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboard import figures
from dashboard.components.controls import page_header, today_utc
from dashboard.components.panel import (
    STATE_ID,
    graph_body,
    panel_callback,
    panel_card,
    render_tiles,
    tiles_body,
)
from dashboard.components.url_state import ViewState, parse_view_state
from dashboard.export import export_href
from data_access.alerts import AlertsQuery
from data_access.queries import DailyBusinessQuery, KpiSummaryQuery, TopProductsQuery

if TYPE_CHECKING:
    from dashboard.app import Services

PATH = "/"
KPIS, REVENUE, PRODUCTS = "overview-kpis", "overview-revenue", "overview-products"
ALERTS = "overview-alerts"


def _kpi_tiles(frame):
    return render_tiles(figures.kpi_tiles(frame))


def _alert_tiles(frame):
    return render_tiles(figures.alert_tiles(frame))


def layout(**query: str) -> html.Div:
    view = parse_view_state(query, today_utc())
    return html.Div(
        [
            dcc.Store(id=STATE_ID, data=view.to_store()),
            page_header(
                "Overview", view, subtitle="Sales and engagement against the previous period"
            ),
            panel_card(
                KPIS,
                "Key numbers",
                tiles_body(KPIS, count=6),
                kind="tiles",
                subtitle=f"Change against the {(view.end - view.start).days + 1} days before; "
                "active users are shop visitors, not screen-time devices",
                export_href=export_href("kpis", view),
                class_name="mc-panel-flat",
            ),
            panel_card(
                ALERTS,
                "Alerts",
                tiles_body(ALERTS, count=3),
                kind="tiles",
                subtitle="Open alerts by severity; the Alerts page lists them",
                class_name="mc-panel-flat",
            ),
            dbc.Row(
                [
                    dbc.Col(
                        panel_card(
                            REVENUE,
                            "Daily revenue",
                            graph_body(REVENUE, height=340),
                            kind="figure",
                            subtitle="Revenue and orders per day (UTC)",
                            export_href=export_href("business-daily", view),
                        ),
                        lg=8,
                    ),
                    dbc.Col(
                        panel_card(
                            PRODUCTS,
                            "Top 5 products",
                            graph_body(PRODUCTS, height=340),
                            kind="figure",
                            subtitle="By revenue in the range",
                            export_href=export_href("top-products", view),
                        ),
                        lg=4,
                    ),
                ],
                className="g-3",
            ),
        ]
    )


def register(app: dash.Dash, services: Services) -> None:
    runner = services.panels
    dash.register_page(
        "overview",
        path=PATH,
        name="Overview",
        title=f"Overview \u00b7 {services.settings.title}",
        layout=layout,
        order=0,
    )

    @panel_callback(app, runner, KPIS, "tiles")
    def kpis(_tick, shown, client, state):
        view = ViewState.from_store(state)
        query = KpiSummaryQuery(view.start, view.end)
        return runner.answer(KPIS, query, shown, client, _kpi_tiles).outputs()

    @panel_callback(app, runner, ALERTS, "tiles")
    def alerts(_tick, shown, client, _state):
        return runner.answer(ALERTS, AlertsQuery(), shown, client, _alert_tiles).outputs()

    @panel_callback(app, runner, REVENUE, "figure")
    def revenue(_tick, shown, client, state):
        view = ViewState.from_store(state)
        query = DailyBusinessQuery(view.start, view.end)
        return runner.answer(REVENUE, query, shown, client, figures.revenue_trend).outputs()

    @panel_callback(app, runner, PRODUCTS, "figure")
    def products(_tick, shown, client, state):
        view = ViewState.from_store(state)
        query = TopProductsQuery(view.start, view.end, limit=5)
        return runner.answer(PRODUCTS, query, shown, client, figures.top_products).outputs()
