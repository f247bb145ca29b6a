"""Inspect a panel: its query, where its data came from, and the rows behind it.

``/inspect?panel=<export view>&<the page's parameters>&version=...`` takes exactly what the
panel's CSV link takes (``dashboard/export.py``) and answers from the same path: the same
rows, at the data version the panel shows, filtered and sorted as its grid is. Rows are per
customer or per order, so the view needs the export's role; others are told so and see none.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import dash
import dash_ag_grid as dag
from dash import dcc, html
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from auth.guard import audit
from dashboard import figures
from dashboard.components.controls import today_utc
from dashboard.components.panel import STATE_ID, may_export, render_badge
from dashboard.components.poll import badge_props
from dashboard.components.url_state import STATE_PARAMS, BadParameter
from dashboard.export import (
    EXPORT_ROLE,
    EXPORT_VIEWS,
    ExportData,
    ExportRefused,
    PinnedVersionGone,
    csv_column,
    export_data,
    export_href,
)
from dashboard.timestamps import utc_text

if TYPE_CHECKING:
    from dashboard.app import Services

PATH = "/inspect"
PANEL_PARAM = "panel"
ROWS_ID = "inspect-rows"

# Times read as on the panels' grids (assets/mc-grid-formatters.js); the rows keep their values.
TIME_FORMATTERS = {"ts": "utcTime", "start": "localTime", "end": "localTime"}

# Where a panel's data was read, in the words of the README's read path.
SOURCES = {
    "memory": "memo: this server's memory of an earlier read",
    "cache": "cache table: a result stored by an earlier read",
    "lake": "Parquet in the lake, read for this answer",
    "stale": "the last good answer (the lake was unreachable)",
}


def _facts(rows: list[tuple[str, Any]], id_: str) -> Any:
    return html.Table(
        html.Tbody([html.Tr([html.Th(name, scope="row"), html.Td(value)]) for name, value in rows]),
        className="table table-sm mc-table mc-inspect-facts mb-0",
        id=id_,
    )


def _section(title: str, body: Any) -> Any:
    return html.Section(
        [html.H2(title, className="mc-panel-title mb-2"), body], className="mc-panel"
    )


def _back(view_name: str, params: dict[str, str]) -> Any:
    spec = EXPORT_VIEWS.get(view_name)
    path = spec.page if spec else "/"
    names = {page["path"]: page["name"] for page in dash.page_registry.values()}
    href = path + (f"?{urlencode(params)}" if params else "")
    return dcc.Link(
        f"\u2190 Back to {names.get(path, 'the page')}",
        href=href,
        className="mc-inspect-back",
        id="inspect-back",
    )


def _query_facts(data: ExportData) -> Any:
    view = data.view
    rows: list[tuple[str, Any]] = [
        ("Query", html.Code(type(data.query).__name__)),
        *(
            (name, html.Code(value) if value else "\u2014")
            for name, value in data.query.describe().items()
        ),
        ("Range", f"{view.range_token} ({view.start} \u2013 {view.end})"),
    ]
    for name in ("customer", "day", "week", "category"):
        value = getattr(view, name)
        if value:
            rows.append((name.capitalize(), str(value)))
    if data.filter_model:
        rows.append(("Grid filter", html.Code(json.dumps(data.filter_model, sort_keys=True))))
    if data.sort:
        rows.append(("Grid sort", html.Code(json.dumps(data.sort))))
    return _facts(rows, "inspect-query")


def _provenance_facts(data: ExportData, now: float) -> Any:
    provenance = data.provenance
    version_note = (
        "pinned: the version the panel showed"
        if data.pinned
        else "current: the link named no version"
    )
    rows: list[tuple[str, Any]] = [
        ("Badge", render_badge(badge_props(provenance, now))),
        ("Source", SOURCES.get(provenance.tier, provenance.tier)),
        ("Data version", html.Code(provenance.version, id="inspect-version")),
        ("Version asked", version_note),
        ("Lake read at", utc_text(provenance.as_of)),
    ]
    if provenance.problem:
        rows.append(("Problem", provenance.problem))
    return _facts(rows, "inspect-provenance")


def _rows_grid(data: ExportData) -> Any:
    columns = []
    for field in data.frame.columns:
        column = csv_column(str(field), data.spec.titles)
        definition: dict[str, Any] = {"field": str(field), "headerName": column.header}
        if is_numeric_dtype(data.frame[field]) and not is_bool_dtype(data.frame[field]):
            definition.update(type="rightAligned", filter="agNumberColumnFilter")
        if column.money:
            definition["valueFormatter"] = {"function": "d3.format('.2f')(params.value)"}
        if str(field) in TIME_FORMATTERS:
            function = TIME_FORMATTERS[str(field)]
            definition["valueFormatter"] = {"function": f"{function}(params.value)"}
        columns.append(definition)
    return dag.AgGrid(
        id=ROWS_ID,
        columnDefs=columns,
        rowData=figures.grid_records(data.frame),
        defaultColDef={"sortable": True, "filter": True, "resizable": True, "minWidth": 110},
        # Each column as wide as its values: the rows are read whole, not squeezed to fit.
        columnSize="autoSize",
        dashGridOptions={
            "pagination": True,
            "paginationPageSize": 50,
            "paginationPageSizeSelector": [20, 50, 100, 500],
            "enableCellTextSelection": True,
            "alwaysShowHorizontalScroll": True,
            "localeText": {"noRowsToShow": "No rows for this selection"},
        },
        className="mc-grid",
        style={"height": "max(420px, 60vh)", "width": "100%"},
    )


def _page(title: str, view_name: str, params: dict[str, str], body: list[Any]) -> html.Div:
    return html.Div(
        [
            dcc.Store(id=STATE_ID, data={}),  # the shell's poll reads it; nothing here polls
            html.Div(
                [
                    html.Div(
                        [
                            html.H1(title, className="mc-page-title"),
                            html.Div(
                                "The panel's query, where its data came from, and its rows "
                                "(the rows its CSV holds)",
                                className="mc-page-subtitle",
                            ),
                        ]
                    ),
                    html.Div(_back(view_name, params), className="mc-page-tools"),
                ],
                className="mc-page-header",
            ),
            *body,
        ],
        id="inspect",
    )


def _refusal(message: str, link: Any = None) -> Any:
    return html.Div([message, " ", link] if link else message, className="mc-empty-hint")


def register(app: dash.Dash, services: Services) -> None:
    def layout(**query: str) -> html.Div:
        view_name = str(query.get(PANEL_PARAM) or "")
        args = {name: value for name, value in query.items() if name != PANEL_PARAM}
        page_params = {name: args[name] for name in STATE_PARAMS if args.get(name)}
        spec = EXPORT_VIEWS.get(view_name)
        title = f"Inspect \u00b7 {spec.title}" if spec else "Inspect"
        if not may_export():
            # The rows are what the CSV export holds: the same role sees them.
            audit("refused", what="inspect", view=view_name[:60])
            return _page(
                title,
                view_name,
                page_params,
                [
                    _refusal(
                        f"Inspecting a panel shows its rows, which needs the {EXPORT_ROLE} "
                        "role (as its CSV export does).",
                    )
                ],
            )
        if spec is None:
            known = ", ".join(EXPORT_VIEWS)
            return _page(
                title,
                view_name,
                page_params,
                [_refusal(f"No panel named {view_name[:60]!r} to inspect. Known: {known}.")],
            )
        try:
            data = export_data(services, view_name, args, today_utc())
        except PinnedVersionGone as exc:
            current = {PANEL_PARAM: view_name, **{k: v for k, v in args.items() if k != "version"}}
            link = dcc.Link("Inspect the current data", href=f"{PATH}?{urlencode(current)}")
            return _page(title, view_name, page_params, [_refusal(exc.explanation, link)])
        except ExportRefused as exc:
            return _page(title, view_name, page_params, [_refusal(exc.message)])
        except (BadParameter, ValueError) as exc:
            return _page(
                title, view_name, page_params, [_refusal(f"This link cannot be inspected: {exc}")]
            )
        # Rows shown are traced as rows exported are.
        audit("inspect", view=view_name, filters=args, rows=len(data.frame))
        now = time.time()
        csv = html.A(
            "CSV",
            href=export_href(
                view_name,
                data.view,
                filter_model=data.filter_model or None,
                sort=data.sort or None,
                version=data.pinned,
            ),
            className="mc-export",
            id="inspect-export",
            title="Download these rows as CSV",
        )
        rows_header = html.Div(
            [
                html.Div(
                    [
                        html.H2("Rows", className="mc-panel-title"),
                        html.Div(
                            f"{len(data.frame):,} rows",
                            className="mc-panel-subtitle",
                            id="inspect-count",
                        ),
                    ]
                ),
                html.Div(csv, className="mc-panel-tools"),
            ],
            className="mc-panel-header",
        )
        return _page(
            title,
            view_name,
            page_params,
            [
                html.Div(
                    [
                        html.Div(_section("Query", _query_facts(data)), className="col-lg-6"),
                        html.Div(
                            _section("Provenance", _provenance_facts(data, now)),
                            className="col-lg-6",
                        ),
                    ],
                    className="row g-3",
                ),
                html.Section([rows_header, _rows_grid(data)], className="mc-panel"),
            ],
        )

    dash.register_page(
        "inspect",
        path=PATH,
        name="Inspect",
        title=f"Inspect \u00b7 {services.settings.title}",
        layout=layout,
        order=90,
        # Reached from a panel, not from the navigation.
        in_navigation=False,
    )
