"""A panel: a card with a title, a provenance badge, a status line, an export link and a body.

Every panel has the same hidden parts, addressed by ``{"type": "mc-<part>", "panel": name}``:
``tick`` (set by the page's poll when the panel has something new), ``version`` (the data
version on screen) and, for charts, ``figure`` (the theme-free figure dict; a clientside
callback applies the light or dark template).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlencode

import dash
import dash_ag_grid as dag
import dash_bootstrap_components as dbc
from dash import ClientsideFunction, Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate

from auth.guard import current_user
from dashboard.cache import AppCaches
from dashboard.components.poll import PanelRunner, age_text
from dashboard.components.poll_api import PanelChecks, callback_check
from dashboard.components.url_state import ViewState
from dashboard.export import EXPORT_ROLE, export_href, sort_from_column_state

log = logging.getLogger(__name__)

ContentKind = Literal["figure", "tiles", "grid"]
CLIENT_ID = "mc-client"
STATE_ID = "mc-state"
THEME_ID = "mc-theme"
POLL_ID = "mc-poll"
VISIBLE_ID = "mc-visible"

GRAPH_CONFIG = {"displaylogo": False, "responsive": True, "displayModeBar": "hover"}


def part(panel: str, name: str) -> dict[str, str]:
    return {"type": f"mc-{name}", "panel": panel}


# ---- rendering of the badge and status line --------------------------------------------------


def render_badge(props: dict) -> Any:
    """The provenance badge: tier dot, tier, and an age the browser keeps counting."""
    if not props:
        return None
    age = props.get("age")
    children: list[Any] = [html.Span(className="mc-dot"), html.Span(props["label"])]
    if age is not None:
        children.append(
            html.Span(className="mc-age", **{"data-age-s": age, "data-age": age_text(age)})
        )
    return html.Span(
        children, className=f"mc-badge mc-tier-{props['tier']}", title=props.get("title", "")
    )


def pending_badge() -> Any:
    """The badge until a panel's first answer: it says so, and the header has its size."""
    return html.Span(
        [html.Span(className="mc-dot"), html.Span("loading")],
        className="mc-badge mc-tier-pending",
        title="Waiting for this panel's first answer",
    )


def render_status(message: str | None) -> Any:
    if not message:
        return None
    return html.Div([html.Span("!", className="mc-status-icon"), message], className="mc-status")


_ARROWS = {"up": "\u25b2", "down": "\u25bc", "flat": "\u25c6", "none": ""}


def render_tiles(tiles: list[dict]) -> list[Any]:
    """Number tiles from ``figures.kpi_tiles``/``fleet_tiles`` data, as grid columns."""
    width = 12 // max(1, min(len(tiles), 6))
    return [
        dbc.Col(
            html.Div(
                [
                    html.Div(tile["label"], className="mc-tile-label"),
                    html.Div(tile["value"], className="mc-tile-value"),
                    html.Div(
                        [
                            html.Span(
                                f"{_ARROWS[tile['direction']]} {tile['change']}".strip(),
                                className=f"mc-change mc-change-{tile['direction']}",
                            )
                            if tile["change"]
                            else None,
                            html.Span(
                                f"vs {tile['previous']}"
                                if tile["change"] and tile["direction"] != "none"
                                else tile["previous"],
                                className="mc-tile-note",
                            ),
                        ],
                        className="mc-tile-foot",
                    ),
                ],
                className="mc-tile",
                id=f"tile-{tile['metric']}",
            ),
            xs=6,
            md=4,
            xl=width,
        )
        for tile in tiles
    ]


def new_runner(
    data, *, floor_seconds: float, figure_cache_items: int, caches: AppCaches | None = None
) -> PanelRunner:
    return PanelRunner(
        data,
        floor_seconds=floor_seconds,
        figure_cache_items=figure_cache_items,
        render_badge=render_badge,
        render_status=render_status,
        caches=caches,
    )


# ---- layout -----------------------------------------------------------------------------------


def _hidden_parts(panel: str, kind: ContentKind) -> list[Any]:
    stores = [
        dcc.Store(id=part(panel, "tick"), data=0),
        dcc.Store(id=part(panel, "version"), data=None),
    ]
    if kind == "figure":
        stores.append(dcc.Store(id=part(panel, "figure"), data=None))
    return stores


def graph_body(panel: str, *, height: int = 320) -> Any:
    # The frame shimmers until the first figure arrives (dcc.Graph ignores className changes).
    return html.Div(
        dcc.Graph(
            id=part(panel, "graph"),
            figure={"data": [], "layout": {}},
            config=GRAPH_CONFIG,
            className="mc-graph",
            style={"height": f"{height}px"},
        ),
        id=part(panel, "frame"),
        className="mc-graph-frame mc-skeleton",
    )


def pending_tile() -> Any:
    """A tile while its number loads: a tile's own lines (label, value, foot), so it has a
    one-line tile's height, with shimmering bars for the value and the foot."""
    return html.Div(
        [
            html.Div("\u00a0", className="mc-tile-label"),
            html.Div("\u00a0", className="mc-tile-value mc-skeleton"),
            html.Div(html.Span("\u00a0"), className="mc-tile-foot mc-skeleton"),
        ],
        className="mc-tile mc-tile-pending",
    )


def tiles_body(panel: str, *, count: int) -> Any:
    # The same columns as render_tiles, so the loaded tiles take the placeholders' places.
    placeholders = [
        dbc.Col(pending_tile(), xs=6, md=4, xl=12 // max(1, min(count, 6))) for _ in range(count)
    ]
    return dbc.Row(placeholders, id=part(panel, "content"), className="g-3")


def grid_body(
    panel: str,
    columns: list[dict],
    *,
    height: int = 420,
    row_id: str | None = None,
) -> Any:
    options: dict[str, Any] = {
        # 50 rows a page (up to 500), scrolled inside a grid sized to the screen: a page
        # sized to fit the box showed 6-7 rows and made hundreds of pages.
        "pagination": True,
        "paginationPageSize": 50,
        "paginationPageSizeSelector": [20, 50, 100, 500],
        "animateRows": False,
        # Columns keep a readable width; on a phone the grid scrolls sideways, and says so.
        "alwaysShowHorizontalScroll": True,
        "enableCellTextSelection": True,
        "localeText": {"noRowsToShow": "No rows for this selection"},
    }
    return dag.AgGrid(
        id=part(panel, "grid"),
        columnDefs=columns,
        rowData=None,
        defaultColDef={
            "sortable": True,
            "filter": True,
            "resizable": True,
            "floatingFilter": True,
            "minWidth": 110,
        },
        columnSize="responsiveSizeToFit",
        dashGridOptions=options,
        getRowId=f"params.data.{row_id}" if row_id else None,
        className="mc-grid",
        style={"height": f"max({height}px, 65vh)", "width": "100%"},
    )


def may_export() -> bool:
    """Whether the user of this request may download CSV exports."""
    user = current_user()
    return user is not None and user.can(EXPORT_ROLE)


def panel_card(
    panel: str,
    title: str,
    body: Any,
    *,
    kind: ContentKind,
    subtitle: str | None = None,
    export_href: str | None = None,
    class_name: str = "",
) -> Any:
    """A panel card. ``export_href`` adds a CSV link (a grid panel updates it as it filters)
    for users allowed to export; others are not offered a link the server would refuse."""
    header_right: list[Any] = [
        html.Span(pending_badge(), id=part(panel, "badge"), className="mc-badge-slot")
    ]
    if export_href is not None and may_export():
        # Inspect shows the CSV's rows with their query and provenance: offered alongside it,
        # to the same role, and kept on the same data version, filter and sort.
        header_right.append(
            dcc.Link(
                "Inspect",
                id=part(panel, "inspect"),
                href=inspect_href_from_export(export_href),
                className="mc-inspect-link",
                title="This panel's query, where its data came from, and its rows",
            )
        )
        header_right.append(
            html.A(
                "CSV",
                id=part(panel, "export"),
                href=export_href,
                className="mc-export",
                title="Download what this panel shows as CSV",
            )
        )
    header = html.Div(
        [
            html.Div(
                [
                    html.H2(title, className="mc-panel-title"),
                    html.Div(subtitle, className="mc-panel-subtitle") if subtitle else None,
                ]
            ),
            html.Div(header_right, className="mc-panel-tools"),
        ],
        className="mc-panel-header",
    )
    return html.Section(
        [
            header,
            html.Div(id=part(panel, "status"), className="mc-status-slot"),
            html.Div(body, className="mc-panel-body"),
            *_hidden_parts(panel, kind),
        ],
        className=f"mc-panel {class_name}".strip(),
        id=f"panel-{panel}",
    )


# ---- callbacks --------------------------------------------------------------------------------


def _content_output(panel: str, kind: ContentKind) -> Output:
    if kind == "figure":
        return Output(part(panel, "figure"), "data")
    if kind == "grid":
        return Output(part(panel, "grid"), "rowData")
    return Output(part(panel, "content"), "children")


def panel_callback(
    app: dash.Dash,
    runner: PanelRunner,
    panel: str,
    kind: ContentKind,
) -> Callable[[Callable[..., tuple]], Callable[..., tuple]]:
    """Register a panel's Dash callback and its check for the panel poll (``poll_api``).

    The decorated function receives ``(tick, shown_version, client_id, view_state)`` and
    returns ``PanelAnswer.outputs()``. It runs when the panel first renders and whenever the
    page's poll learns the panel has something new; anything it raises becomes a degraded
    panel, never an error.
    """

    def decorator(function: Callable[..., tuple]) -> Callable[..., tuple]:
        @functools.wraps(function)
        def guarded(*args: Any) -> tuple:
            try:
                outputs = function(*args)
            except Exception:
                log.exception("panel %s callback failed", panel)
                return runner.degraded("This panel could not be updated.").outputs()
            if all(value is no_update for value in outputs):
                raise PreventUpdate  # the cheapest answer: 204, no body
            return outputs

        app.callback(
            _content_output(panel, kind),
            Output(part(panel, "version"), "data"),
            Output(part(panel, "badge"), "children"),
            Output(part(panel, "status"), "children"),
            Input(part(panel, "tick"), "data"),
            State(part(panel, "version"), "data"),
            State(CLIENT_ID, "data"),
            State(STATE_ID, "data"),
        )(guarded)
        PanelChecks.of(app.server).add(panel, callback_check(panel, function))
        return function

    return decorator


def register_grid_export(app: dash.Dash, panel: str, view_name: str) -> None:
    """Keep a grid panel's CSV link equal to what the grid shows: same filter, same sort, and
    the data version its rows were built from, so the file holds those rows even after newer
    data arrived."""

    @app.callback(
        Output(part(panel, "export"), "href"),
        Input(part(panel, "grid"), "filterModel"),
        Input(part(panel, "grid"), "columnState"),
        Input(part(panel, "version"), "data"),
        State(STATE_ID, "data"),
        prevent_initial_call=True,
    )
    def export_link(filter_model, column_state, version, state):
        view = ViewState.from_store(state)
        return export_href(
            view_name,
            view,
            filter_model=filter_model or None,
            sort=sort_from_column_state(column_state),
            version=version if isinstance(version, str) else None,
        )


PIN_EXPORT_VERSION_JS = """
function (version, href) {
    if (!href) { return window.dash_clientside.no_update; }
    const url = new URL(href, window.location.origin);
    if (typeof version === "string" && version) {
        url.searchParams.set("version", version);
    } else {
        url.searchParams.delete("version");
    }
    return url.pathname + url.search;
}
"""


# A panel's Inspect link follows its CSV link: same view, version, filter and sort.
INSPECT_FROM_EXPORT_JS = """
function (href) {
    if (!href) { return window.dash_clientside.no_update; }
    const url = new URL(href, window.location.origin);
    const match = url.pathname.match(/^\\/export\\/(.+)\\.csv$/);
    if (!match) { return window.dash_clientside.no_update; }
    const params = new URLSearchParams([["panel", match[1]]]);
    url.searchParams.forEach(function (value, name) { params.append(name, value); });
    return "/inspect?" + params.toString();
}
"""


def inspect_href_from_export(href: str) -> str:
    """The Inspect URL of a panel whose CSV link is ``href`` (``/export/<view>.csv?...``)."""
    path, _, query = href.partition("?")
    view_name = path.removeprefix("/export/").removesuffix(".csv")
    return f"/inspect?{urlencode({'panel': view_name})}" + (f"&{query}" if query else "")


def register_clientside(app: dash.Dash) -> None:
    """The clientside halves every panel shares; registered once per app."""
    # One poll per tick for the whole tab (POST /poll, poll_api): only while the tab is
    # visible and the previous poll is answered; it sets the tick of each changed panel.
    app.clientside_callback(
        ClientsideFunction("mc", "poll"),
        Output({"type": "mc-tick", "panel": dash.ALL}, "data"),
        Input(POLL_ID, "n_intervals"),
        Input(VISIBLE_ID, "data"),
        State({"type": "mc-version", "panel": dash.ALL}, "data"),
        State(CLIENT_ID, "data"),
        State(STATE_ID, "data"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        ClientsideFunction("mc", "themeFigure"),
        Output({"type": "mc-graph", "panel": dash.MATCH}, "figure"),
        Output({"type": "mc-frame", "panel": dash.MATCH}, "className"),
        Input({"type": "mc-figure", "panel": dash.MATCH}, "data"),
        Input(THEME_ID, "data"),
    )
    # A CSV link carries the data version on screen, so the file holds the rows shown even
    # after newer data arrived (dashboard/export.py). Only panels with a link match; a grid's
    # link is also rebuilt by its own callback (register_grid_export), to the same version.
    app.clientside_callback(
        INSPECT_FROM_EXPORT_JS,
        Output({"type": "mc-inspect", "panel": dash.MATCH}, "href"),
        Input({"type": "mc-export", "panel": dash.MATCH}, "href"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        PIN_EXPORT_VERSION_JS,
        Output({"type": "mc-export", "panel": dash.MATCH}, "href", allow_duplicate=True),
        Input({"type": "mc-version", "panel": dash.MATCH}, "data"),
        State({"type": "mc-export", "panel": dash.MATCH}, "href"),
        prevent_initial_call=True,
    )
