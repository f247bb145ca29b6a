"""Screen time: the fleet from the per-date rollups, then one customer, one day, its sessions.

Drill-down state is in the URL (``?customer=c0000007&day=2026-11-20``): choosing a customer or
clicking a day writes it, the page re-renders from it, Back steps out again.
"""

from __future__ import annotations

import logging
import re
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
    render_tiles,
    tiles_body,
)
from dashboard.components.url_state import (
    BadParameter,
    ViewState,
    parse_date,
    parse_view_state,
    query_param,
    search_with,
)
from dashboard.export import export_href
from data_access.queries import (
    CustomerDayQuery,
    CustomerSearchQuery,
    CustomerSessionsQuery,
    CustomerTrendQuery,
    FleetAppsQuery,
    FleetDailyQuery,
    FleetHoursQuery,
)

if TYPE_CHECKING:
    from dashboard.app import Services

log = logging.getLogger(__name__)

PATH = "/screen-time"
CUSTOMER_PICKER = "screen-customer"
# The picker's search text once typing pauses (assets/mc-customer-search.js writes it).
CUSTOMER_SEARCH = "screen-customer-search"
FLEET_TILES, FLEET_ACTIVITY, FLEET_CATEGORIES = "fleet-tiles", "fleet-activity", "fleet-categories"
FLEET_APPS, FLEET_HOURS = "fleet-apps", "fleet-hours"
TREND, DAY_APPS, DAY_HOURS, SESSIONS = (
    "customer-trend",
    "customer-day-apps",
    "customer-day-hours",
    "customer-sessions",
)
# dashboard/app.py's OPERATOR_OUTPUTS refuses the drill-down's callbacks below this role.
CUSTOMER_ROLE = "operator"
_PREFIX = re.compile(r"[A-Za-z0-9_-]{0,64}")

SESSION_COLUMNS = [
    # The device's wall-clock time (no zone in the upload), so no "UTC" on these.
    {
        "field": "start",
        "headerName": "Start",
        "filter": "agTextColumnFilter",
        "sort": "asc",
        "valueFormatter": {"function": "localTime(params.value)"},
    },
    {
        "field": "end",
        "headerName": "End",
        "filter": "agTextColumnFilter",
        "valueFormatter": {"function": "localTime(params.value)"},
    },
    {"field": "app_name", "headerName": "App", "filter": "agTextColumnFilter"},
    {"field": "category", "headerName": "Category", "filter": "agTextColumnFilter"},
    {
        "field": "minutes",
        "headerName": "Minutes",
        "filter": "agNumberColumnFilter",
        "cellDataType": "number",
        "type": "rightAligned",
    },
    {
        "field": "pickups",
        "headerName": "Pickups",
        "filter": "agNumberColumnFilter",
        "cellDataType": "number",
        "type": "rightAligned",
    },
    {
        "field": "notifications",
        "headerName": "Notifications",
        "filter": "agNumberColumnFilter",
        "cellDataType": "number",
        "type": "rightAligned",
    },
]


def _fleet_tiles(frame):
    return render_tiles(figures.fleet_tiles(frame))


def _customer_section(view: ViewState) -> list[Any]:
    user = current_user()
    if user is None or not user.can(CUSTOMER_ROLE):
        # Not offered what the server would refuse: a shared drill-down link says so once
        # instead of rendering panels whose polls would each get a 403.
        wanted = f" ({view.customer})" if view.customer else ""
        return [
            html.Div(
                f"Customer drill-down{wanted} needs the operator role; the fleet panels "
                "above are open to every role.",
                className="mc-empty-hint",
                id="customer-needs-operator",
            )
        ]
    picker = dcc.Dropdown(
        id=CUSTOMER_PICKER,
        options=[view.customer] if view.customer else [],
        value=view.customer,
        placeholder="Search a customer id, e.g. c0000007",
        searchable=True,
        clearable=True,
        className="mc-customer-picker",
    )
    searched = dcc.Store(id=CUSTOMER_SEARCH)
    intro = html.Div(
        [
            html.H2("Customer drill-down", className="mc-section-title"),
            html.Div(
                "Pick a customer, click a day in their trend, then read that day's sessions.",
                className="mc-section-subtitle",
            ),
        ]
    )
    section: list[Any] = [html.Div([intro, picker, searched], className="mc-section-header")]
    if view.customer is None:
        section.append(html.Div("No customer selected.", className="mc-empty-hint"))
        return section
    section.append(
        panel_card(
            TREND,
            f"Daily screen time \u00b7 {view.customer}",
            graph_body(TREND, height=280),
            kind="figure",
            subtitle="Click a day to see its apps and sessions",
            export_href=export_href("customer-trend", view),
        )
    )
    if view.day is None:
        section.append(html.Div("Click a day in the trend above.", className="mc-empty-hint"))
        return section
    day = f"{view.day:%a %d %b %Y}"
    section.extend(
        [
            dbc.Row(
                [
                    dbc.Col(
                        panel_card(
                            DAY_APPS,
                            f"Apps on {day}",
                            graph_body(DAY_APPS, height=360),
                            kind="figure",
                            export_href=export_href("customer-day", view),
                        ),
                        lg=5,
                    ),
                    dbc.Col(
                        panel_card(
                            DAY_HOURS,
                            f"Hours of {day}",
                            graph_body(DAY_HOURS, height=360),
                            kind="figure",
                            subtitle="Device local time, by category",
                            export_href=export_href("customer-day", view),
                        ),
                        lg=7,
                    ),
                ],
                className="g-3",
            ),
            panel_card(
                SESSIONS,
                f"Sessions on {day}",
                grid_body(SESSIONS, SESSION_COLUMNS),
                kind="grid",
                subtitle="As the device reported them; sort and filter, the CSV follows",
                export_href=export_href("customer-sessions", view),
            ),
        ]
    )
    return section


def layout(**query: str) -> html.Div:
    view = parse_view_state(query, today_utc())
    return html.Div(
        [
            dcc.Store(id=STATE_ID, data=view.to_store()),
            page_header("Screen time", view, subtitle="The fleet from daily rollups"),
            panel_card(
                FLEET_TILES,
                "Fleet",
                tiles_body(FLEET_TILES, count=4),
                kind="tiles",
                export_href=export_href("fleet-daily", view),
                class_name="mc-panel-flat",
            ),
            dbc.Row(
                [
                    dbc.Col(
                        panel_card(
                            FLEET_ACTIVITY,
                            "Active devices and screen time",
                            graph_body(FLEET_ACTIVITY),
                            kind="figure",
                            subtitle="Devices (one per customer) that reported use, per day; "
                            "screen time per active device",
                            export_href=export_href("fleet-daily", view),
                        ),
                        lg=8,
                    ),
                    dbc.Col(
                        panel_card(
                            FLEET_CATEGORIES,
                            "Categories",
                            graph_body(FLEET_CATEGORIES),
                            kind="figure",
                            subtitle="Share of screen time",
                            export_href=export_href("fleet-categories", view),
                        ),
                        lg=4,
                    ),
                ],
                className="g-3",
            ),
            dbc.Row(
                [
                    dbc.Col(
                        panel_card(
                            FLEET_APPS,
                            "Top apps",
                            graph_body(FLEET_APPS, height=360),
                            kind="figure",
                            subtitle="Hours over the range",
                            export_href=export_href("fleet-apps", view),
                        ),
                        lg=6,
                    ),
                    dbc.Col(
                        panel_card(
                            FLEET_HOURS,
                            "Usage by hour of day",
                            graph_body(FLEET_HOURS, height=360),
                            kind="figure",
                            subtitle="Minutes per active customer-day, device local time",
                            export_href=export_href("fleet-hours", view),
                        ),
                        lg=6,
                    ),
                ],
                className="g-3",
            ),
            html.Section(_customer_section(view), className="mc-section", id="customer-section"),
        ]
    )


def register(app: dash.Dash, services: Services) -> None:
    runner = services.panels
    dash.register_page(
        "screen_time",
        path=PATH,
        name="Screen time",
        title=f"Screen time \u00b7 {services.settings.title}",
        layout=layout,
        order=1,
    )

    # ---- fleet ----

    @panel_callback(app, runner, FLEET_TILES, "tiles")
    def fleet_tiles(_tick, shown, client, state):
        view = ViewState.from_store(state)
        query = FleetDailyQuery(view.start, view.end)
        return runner.answer(FLEET_TILES, query, shown, client, _fleet_tiles).outputs()

    @panel_callback(app, runner, FLEET_ACTIVITY, "figure")
    def fleet_activity(_tick, shown, client, state):
        view = ViewState.from_store(state)
        query = FleetDailyQuery(view.start, view.end)
        return runner.answer(FLEET_ACTIVITY, query, shown, client, figures.fleet_activity).outputs()

    @panel_callback(app, runner, FLEET_CATEGORIES, "figure")
    def fleet_categories(_tick, shown, client, state):
        view = ViewState.from_store(state)
        query = FleetAppsQuery(view.start, view.end)
        return runner.answer(
            FLEET_CATEGORIES, query, shown, client, figures.category_donut
        ).outputs()

    @panel_callback(app, runner, FLEET_APPS, "figure")
    def fleet_apps(_tick, shown, client, state):
        view = ViewState.from_store(state)
        query = FleetAppsQuery(view.start, view.end)
        return runner.answer(FLEET_APPS, query, shown, client, figures.top_apps).outputs()

    @panel_callback(app, runner, FLEET_HOURS, "figure")
    def fleet_hours(_tick, shown, client, state):
        view = ViewState.from_store(state)
        query = FleetHoursQuery(view.start, view.end)
        return runner.answer(FLEET_HOURS, query, shown, client, figures.hourly_usage).outputs()

    # ---- one customer ----

    @panel_callback(app, runner, TREND, "figure")
    def trend(_tick, shown, client, state):
        view = ViewState.from_store(state)
        query = None
        if view.customer:
            query = CustomerTrendQuery(view.start, view.end, customer_id=view.customer)
        selected = view.day.isoformat() if view.day else None
        return runner.answer(
            TREND,
            query,
            shown,
            client,
            lambda frame: figures.customer_trend(frame, selected),
            build_key=selected,
        ).outputs()

    @panel_callback(app, runner, DAY_APPS, "figure")
    def day_apps(_tick, shown, client, state):
        view = ViewState.from_store(state)
        query = CustomerDayQuery(view.customer, view.day) if view.customer and view.day else None
        return runner.answer(DAY_APPS, query, shown, client, figures.customer_day_apps).outputs()

    @panel_callback(app, runner, DAY_HOURS, "figure")
    def day_hours(_tick, shown, client, state):
        view = ViewState.from_store(state)
        query = CustomerDayQuery(view.customer, view.day) if view.customer and view.day else None
        return runner.answer(DAY_HOURS, query, shown, client, figures.customer_day_hours).outputs()

    @panel_callback(app, runner, SESSIONS, "grid")
    def sessions(_tick, shown, client, state):
        view = ViewState.from_store(state)
        query = None
        if view.customer and view.day:
            query = CustomerSessionsQuery(view.customer, view.day)
        limit = services.settings.grid_row_limit
        return runner.answer(
            SESSIONS, query, shown, client, lambda frame: figures.grid_records(frame, limit)
        ).outputs()

    register_grid_export(app, SESSIONS, "customer-sessions")

    # ---- drill-down navigation ----

    app.clientside_callback(
        dash.ClientsideFunction("mc_customer_search", "afterPause"),
        Output(CUSTOMER_SEARCH, "data"),
        Input(CUSTOMER_PICKER, "search_value"),
        prevent_initial_call=True,
    )

    @app.callback(
        Output(CUSTOMER_PICKER, "options"),
        Input(CUSTOMER_SEARCH, "data"),
        State(CUSTOMER_PICKER, "value"),
        State(STATE_ID, "data"),
        prevent_initial_call=True,
    )
    def customer_options(prefix, selected, state):
        if prefix is None or not _PREFIX.fullmatch(prefix):
            return no_update
        try:
            found = services.data.fetch(CustomerSearchQuery(prefix)).data
        except Exception:
            log.exception("customer search failed")
            return no_update
        options = [str(customer) for customer in found["customer_id"].tolist()]
        if selected and selected not in options:
            options.insert(0, selected)
        return options

    @app.callback(
        Output(URL_ID, "search", allow_duplicate=True),
        Input(CUSTOMER_PICKER, "value"),
        State(URL_ID, "search"),
        prevent_initial_call=True,
    )
    def choose_customer(customer, search):
        # Dash also calls this when the page renders the picker: then it shows the URL's own.
        if (customer or None) == query_param(search, "customer"):
            return no_update
        return search_with(search, customer=customer or None, day=None)

    @app.callback(
        Output(URL_ID, "search", allow_duplicate=True),
        Input(part(TREND, "graph"), "clickData"),
        State(URL_ID, "search"),
        prevent_initial_call=True,
    )
    def choose_day(click, search):
        try:
            day = parse_date(str(click["points"][0]["x"])[:10], "day")
        except (BadParameter, KeyError, IndexError, TypeError):
            return no_update
        new = search_with(search, day=day.isoformat())
        return no_update if new == (search or "") else new
