"""What the lake holds: uploads, events, rollups, quarantine.

The summary is a query like any other, so it is cached under the data versions of every
writer; the panel polls like every other and lists the lake again only after something was
written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dash
import dash_bootstrap_components as dbc
import pandas as pd
from dash import dcc, html

from dashboard.components.controls import page_header
from dashboard.components.panel import STATE_ID, panel_callback, panel_card, part
from data_access import layout as lake_layout
from data_access.queries import LakeSummaryQuery

if TYPE_CHECKING:
    from dashboard.app import Services

PATH = "/lake"
SUMMARY = "lake-summary"
PREFIXES = {
    lake_layout.RAW_SCREEN_TIME: "Raw screen-time uploads",
    lake_layout.PROCESSED_SCREEN_TIME: "Processed customer-days",
    lake_layout.QUARANTINE_SCREEN_TIME: "Quarantined uploads and reasons",
    lake_layout.PROCESSED_EVENTS: "Compacted events",
    lake_layout.PROCESSED_METRICS: "Compacted metrics",
    lake_layout.ROLLUP_SCREEN_TIME: "Screen-time rollups",
    lake_layout.ROLLUP_BUSINESS: "Business rollups",
}


def _size(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size >= scale:
            return f"{size / scale:,.1f} {unit}"
    return f"{size:,} B"


def _row(prefix: str, count: Any, size: Any) -> Any:
    return html.Tr(
        [
            html.Td([html.Div(PREFIXES.get(prefix, prefix)), html.Code(prefix)]),
            html.Td(count, className="text-end"),
            html.Td(size, className="text-end"),
        ]
    )


def summary_table(frame: pd.DataFrame) -> Any:
    """The lake summary (prefix, objects, bytes) as a table, one row per zone."""
    rows = [
        _row(prefix, f"{count:,}", _size(size))
        for prefix, count, size in frame.itertuples(index=False, name=None)
    ]
    return _table(rows)


def pending_table() -> Any:
    """The table while the lake is listed: every zone's row, its numbers shimmering."""

    def bar() -> Any:
        return html.Span("\u00a0", className="mc-skeleton mc-skeleton-number")

    return _table([_row(prefix, bar(), bar()) for prefix in PREFIXES])


def _table(rows: list[Any]) -> Any:
    return dbc.Table(
        [
            html.Thead(
                html.Tr(
                    [
                        html.Th("Prefix"),
                        html.Th("Objects", className="text-end"),
                        html.Th("Size", className="text-end"),
                    ]
                )
            ),
            html.Tbody(rows),
        ],
        hover=True,
        responsive=True,
        className="mc-table mb-0",
    )


def layout(**_query: str) -> html.Div:
    return html.Div(
        [
            # Panels read the view state; this page has no range (it lists the lake as it is).
            dcc.Store(id=STATE_ID, data={}),
            page_header("Lake", None, subtitle="What the lake holds, by prefix"),
            panel_card(
                SUMMARY,
                "Objects per zone",
                # Replaced by the table on the panel's first answer.
                html.Div(pending_table(), id=part(SUMMARY, "content")),
                kind="tiles",
                subtitle="Object count and size of each prefix; refreshes with the page",
            ),
        ]
    )


def register(app: dash.Dash, services: Services) -> None:
    runner = services.panels
    dash.register_page(
        "lake",
        path=PATH,
        name="Lake",
        title=f"Lake \u00b7 {services.settings.title}",
        layout=layout,
    )

    @panel_callback(app, runner, SUMMARY, "tiles")
    def summary(_tick, shown, client, _state):
        query = LakeSummaryQuery(tuple(PREFIXES))
        return runner.answer(SUMMARY, query, shown, client, summary_table).outputs()
