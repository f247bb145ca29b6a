"""Revenue: weekly trend by category, a week's orders, and every product.

Clicking a week's bar segment writes ``?week=<monday>&category=<name>`` to the URL; the
orders grid shows that week (Monday to Sunday) and category.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, dcc, html, no_update

from auth.guard import current_user
from dashboard import figures
from dashboard.components.controls import URL_ID, page_header, today_utc
from dashboard.components.panel import (
    STATE_ID,
    graph_body,
    grid_body,
    panel_callback,
    panel_card,
    part,
    register_grid_export,
)
from dashboard.components.url_state import (
    BadParameter,
    ViewState,
    parse_category,
    parse_date,
    parse_view_state,
    search_with,
    week_start,
)
from dashboard.export import export_href, orders_query
from data_access.queries import TopProductsQuery, WeeklyRevenueQuery

if TYPE_CHECKING:
    from dashboard.app import Services

PATH = "/revenue"
WEEKLY, CATEGORIES, ORDERS, PRODUCTS = (
    "revenue-weekly",
    "revenue-categories",
    "revenue-orders",
    "revenue-products",
)


def _text(field: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"field": field, "headerName": name, "filter": "agTextColumnFilter", **extra}


def _number(field: str, name: str, money: bool = False, **extra: Any) -> dict[str, Any]:
    column = {
        "field": field,
        "headerName": name,
        "filter": "agNumberColumnFilter",
        "cellDataType": "number",
        "type": "rightAligned",
        **extra,
    }
    if money:
        column["valueFormatter"] = {"function": "d3.format('$,.2f')(params.value)"}
    return column


ORDER_COLUMNS = [
    _text("ts", "Time (UTC)", minWidth=220, valueFormatter={"function": "utcTime(params.value)"}),
    _text("order_id", "Order", minWidth=150),
    _text("user_id", "User"),
    _text("product_id", "Product id", maxWidth=130),
    _text("product_name", "Product", minWidth=200),
    _text("category", "Category"),
    _number("quantity", "Qty", maxWidth=100),
    _number("unit_price", "Unit price", money=True),
    _number("amount", "Amount", money=True),
    _text("currency", "Currency", maxWidth=120),
]
PRODUCT_COLUMNS = [
    _text("product_id", "Product id", maxWidth=130),
    _text("product_name", "Product", minWidth=220),
    _text("category", "Category"),
    _number("revenue", "Revenue", money=True),
    _number("orders", "Orders"),
    _number("quantity", "Units"),
]


def _orders_section(view: ViewState) -> Any:
    user = current_user()
    if user is None or not user.can("operator"):
        # Orders carry user ids: viewers see the aggregates above (the server refuses the
        # orders callback and export to them as well).
        return html.Div(
            "Order detail needs the operator role; the week's totals are in the charts.",
            className="mc-empty-hint",
            id="revenue-orders-needs-operator",
        )
    if view.week is None:
        return html.Div(
            "Click a week (or one category of a week) in the chart above to list its orders.",
            className="mc-empty-hint",
        )
    last = view.week + dt.timedelta(days=6)
    title = f"Orders \u00b7 {view.week:%d %b} \u2013 {last:%d %b %Y}"
    if view.category:
        title += f" \u00b7 {view.category}"
    return panel_card(
        ORDERS,
        title,
        grid_body(ORDERS, ORDER_COLUMNS, height=460),
        kind="grid",
        subtitle="Newest first; sort and filter, the CSV follows",
        export_href=export_href("orders", view),
    )


def layout(**query: str) -> html.Div:
    view = parse_view_state(query, today_utc())
    return html.Div(
        [
            dcc.Store(id=STATE_ID, data=view.to_store()),
            page_header("Revenue", view, subtitle="Weekly trend, orders and products"),
            dbc.Row(
                [
                    dbc.Col(
                        panel_card(
                            WEEKLY,
                            "Weekly revenue by category",
                            graph_body(WEEKLY, height=360),
                            kind="figure",
                            subtitle="Weeks start on Monday; click a bar for its orders",
                            export_href=export_href("weekly-revenue", view),
                        ),
                        lg=8,
                    ),
                    dbc.Col(
                        panel_card(
                            CATEGORIES,
                            "By category",
                            graph_body(CATEGORIES, height=360),
                            kind="figure",
                            subtitle="Share of revenue in the range",
                            export_href=export_href("category-revenue", view),
                        ),
                        lg=4,
                    ),
                ],
                className="g-3",
            ),
            _orders_section(view),
            panel_card(
                PRODUCTS,
                "By product",
                grid_body(PRODUCTS, PRODUCT_COLUMNS, height=420),
                kind="grid",
                subtitle="Every product sold in the range",
                export_href=export_href("products", view),
            ),
        ]
    )


def register(app: dash.Dash, services: Services) -> None:
    runner = services.panels
    limit = services.settings.grid_row_limit
    dash.register_page(
        "revenue",
        path=PATH,
        name="Revenue",
        title=f"Revenue \u00b7 {services.settings.title}",
        layout=layout,
        order=2,
    )

    @panel_callback(app, runner, WEEKLY, "figure")
    def weekly(_tick, shown, client, state):
        view = ViewState.from_store(state)
        query = WeeklyRevenueQuery(view.start, view.end)
        week = view.week.isoformat() if view.week else None
        return runner.answer(
            WEEKLY,
            query,
            shown,
            client,
            lambda frame: figures.weekly_revenue(
                frame, week, view.category, start=view.start, end=view.end
            ),
            build_key=(week, view.category),
        ).outputs()

    @panel_callback(app, runner, CATEGORIES, "figure")
    def categories(_tick, shown, client, state):
        view = ViewState.from_store(state)
        query = TopProductsQuery(view.start, view.end, limit=0)
        return runner.answer(CATEGORIES, query, shown, client, figures.category_revenue).outputs()

    @panel_callback(app, runner, ORDERS, "grid")
    def orders(_tick, shown, client, state):
        view = ViewState.from_store(state)
        query = orders_query(view) if view.week else None
        return runner.answer(
            ORDERS, query, shown, client, lambda frame: figures.grid_records(frame, limit)
        ).outputs()

    @panel_callback(app, runner, PRODUCTS, "grid")
    def products(_tick, shown, client, state):
        view = ViewState.from_store(state)
        query = TopProductsQuery(view.start, view.end, limit=0)
        return runner.answer(
            PRODUCTS, query, shown, client, lambda frame: figures.grid_records(frame, limit)
        ).outputs()

    register_grid_export(app, ORDERS, "orders")
    register_grid_export(app, PRODUCTS, "products")

    @app.callback(
        Output(URL_ID, "search", allow_duplicate=True),
        Input(part(WEEKLY, "graph"), "clickData"),
        State(URL_ID, "search"),
        prevent_initial_call=True,
    )
    def choose_week(click, search):
        try:
            point = click["points"][0]
            week = week_start(parse_date(str(point["x"])[:10], "week"))
            category = parse_category(point.get("customdata"))
        except (BadParameter, KeyError, IndexError, TypeError):
            return no_update
        new = search_with(search, week=week.isoformat(), category=category)
        return no_update if new == (search or "") else new
