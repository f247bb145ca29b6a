"""What the lake holds: uploads, events, rollups, quarantine.

The summary is a query like any other, so it is cached under the data versions of every
writer and lists the lake only after something was written.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import dash
import dash_bootstrap_components as dbc
from dash import html

from dashboard.components.controls import page_header
from data_access import layout as lake_layout
from data_access.queries import LakeSummaryQuery

if TYPE_CHECKING:
    from dashboard.app import Services

log = logging.getLogger(__name__)

PATH = "/lake"
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


def register(app: dash.Dash, services: Services) -> None:
    def layout(**_query: str) -> html.Div:
        try:
            frame = services.data.fetch(LakeSummaryQuery(tuple(PREFIXES))).data
            summary = list(frame.itertuples(index=False, name=None))
        except Exception:
            log.exception("lake listing failed")
            body = html.Div(
                "The lake could not be listed right now. Reload to try again.",
                className="mc-status",
            )
        else:
            rows = [
                html.Tr(
                    [
                        html.Td([html.Div(PREFIXES[prefix]), html.Code(prefix)]),
                        html.Td(f"{count:,}", className="text-end"),
                        html.Td(_size(size), className="text-end"),
                    ]
                )
                for prefix, count, size in summary
            ]
            body = dbc.Table(
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
        return html.Div(
            [
                page_header("Lake", None, subtitle="Objects per zone, listed when the page loads"),
                html.Section(
                    [html.Div(body, className="mc-panel-body")],
                    className="mc-panel",
                    id="panel-lake-summary",
                ),
            ]
        )

    dash.register_page(
        "lake",
        path=PATH,
        name="Lake",
        title=f"Lake \u00b7 {services.settings.title}",
        layout=layout,
    )
