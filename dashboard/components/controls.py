"""Shell controls: the time-range picker, the refresh picker, the theme toggle, navigation.

The range lives in the URL (``?range=7d`` or ``?range=2026-01-01..2026-01-31``): the picker
writes it, the page re-renders from it, so links share the view and Back restores it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import ClientsideFunction, Input, Output, State, ctx, dcc, html, no_update

from dashboard.components.panel import POLL_ID, THEME_ID, VISIBLE_ID
from dashboard.components.url_state import (
    CUSTOM_RANGE,
    DEFAULT_RANGE,
    DEFAULT_WINDOW,
    RANGE_PRESETS,
    WINDOW_PRESETS,
    BadParameter,
    ViewState,
    custom_range,
    parse_date,
    query_param,
    resolve_range,
    search_with,
)

URL_ID = "mc-url"
RANGE_PRESET_ID = "mc-range-preset"
RANGE_DATES_ID = "mc-range-dates"
RANGE_DATES_WRAP_ID = "mc-range-dates-wrap"
REFRESH_ID = "mc-refresh"
WINDOW_ID = "mc-window"
FRESHNESS_ID = "mc-freshness"
THEME_TOGGLE_ID = "mc-theme-toggle"


def refresh_label(ms: int) -> str:
    if ms == 0:
        return "Off"
    if ms % 60_000 == 0:
        return f"{ms // 60_000} min"
    if ms % 1000 == 0:
        return f"{ms // 1000} s"
    return f"{ms} ms"


def refresh_picker(choices_ms: tuple[int, ...], default_ms: int) -> Any:
    options = [{"label": f"Refresh: {refresh_label(ms)}", "value": str(ms)} for ms in choices_ms]
    options.insert(0, {"label": "Refresh: off", "value": "0"})
    return dbc.Select(
        id=REFRESH_ID,
        options=options,
        value=str(default_ms),
        persistence=True,
        persistence_type="local",
        size="sm",
        className="mc-refresh",
    )


def freshness_indicator(refresh_default_ms: int) -> Any:
    """The page's freshness: "Updated 3 s ago", "Paused", "Refresh off" or "Offline".

    The browser keeps it current (assets/mission-control.js): from the answers to the
    page's polls, the refresh picker and the tab's visibility. The server renders only its
    first state.
    """
    off = refresh_default_ms == 0
    return html.Span(
        [
            html.Span(className="mc-dot"),
            html.Span("Refresh off" if off else "Connecting\u2026", className="mc-freshness-text"),
        ],
        id=FRESHNESS_ID,
        className="mc-freshness",
        role="status",
        title="When this page last heard from the server",
        **{"data-state": "off" if off else "live"},
    )


def theme_toggle() -> Any:
    return html.Button(
        html.Span(className="mc-theme-icon"),
        id=THEME_TOGGLE_ID,
        className="btn btn-sm mc-icon-button",
        title="Switch between light and dark",
        **{"aria-label": "Switch between light and dark theme"},
    )


def range_picker(view: ViewState) -> Any:
    preset = view.range_token if view.is_preset else CUSTOM_RANGE
    options = [{"label": label, "value": key} for key, label in RANGE_PRESETS.items()]
    options.append({"label": "Custom dates\u2026", "value": CUSTOM_RANGE})
    return html.Div(
        [
            dbc.Select(
                id=RANGE_PRESET_ID,
                options=options,
                value=preset,
                size="sm",
                className="mc-range-preset",
            ),
            html.Div(
                dcc.DatePickerRange(
                    id=RANGE_DATES_ID,
                    start_date=view.start.isoformat(),
                    end_date=view.end.isoformat(),
                    display_format="YYYY-MM-DD",
                    minimum_nights=0,
                    first_day_of_week=1,
                    clearable=False,
                ),
                id=RANGE_DATES_WRAP_ID,
                className="mc-range-dates" + ("" if preset == CUSTOM_RANGE else " d-none"),
            ),
            html.Span(
                f"{view.start:%d %b %Y} \u2013 {view.end:%d %b %Y}",
                className="mc-range-text",
            ),
        ],
        className="mc-range",
    )


def window_picker(token: str) -> Any:
    """The hours a page looks back (Health, Alerts): ``?window=`` in the URL."""
    return dbc.Select(
        id=WINDOW_ID,
        options=[{"label": label, "value": key} for key, label in WINDOW_PRESETS.items()],
        value=token,
        size="sm",
        className="mc-range-preset",
    )


def page_header(
    title: str,
    view: ViewState | None,
    *,
    subtitle: str | None = None,
    window: str | None = None,
    problems: tuple[str, ...] = (),
) -> Any:
    """A page's title row: title, a range picker (``view``) or an hours picker (``window``),
    and any problems with the URL."""
    notices = [
        dbc.Alert(problem, color="warning", className="py-2 mb-2", dismissable=True)
        for problem in (*(view.problems if view else ()), *problems)
    ]
    if view is not None:
        tools = range_picker(view)
    elif window is not None:
        tools = window_picker(window)
    else:
        tools = None
    return html.Div(
        [
            html.Div(
                [
                    html.Div(
                        [
                            html.H1(title, className="mc-page-title"),
                            html.Div(subtitle, className="mc-page-subtitle") if subtitle else None,
                        ]
                    ),
                    html.Div(tools, className="mc-page-tools"),
                ],
                className="mc-page-header",
            ),
            *notices,
        ]
    )


def nav_links(pages: list[dict]) -> Any:
    return html.Nav(
        [
            dcc.Link(
                page["name"],
                href=page["relative_path"],
                id={"type": "mc-nav", "path": page["relative_path"]},
                className="mc-nav-link",
            )
            for page in pages
        ],
        className="mc-nav",
    )


def next_range_search(
    trigger: str | None,
    preset: str | None,
    start: str | None,
    end: str | None,
    search: str | None,
) -> str | None:
    """The URL query string after a range picker change, or None when the URL stays.

    Dash also calls this when a page with the pickers renders; the pickers then agree with
    the URL and nothing changes.
    """
    current = query_param(search, "range") or DEFAULT_RANGE
    try:
        resolve_range(current, today_utc())
    except BadParameter:
        # The page shows the default range and says why; rendering the pickers must not
        # rewrite the URL, which would re-render the page without that notice.
        current = DEFAULT_RANGE
    # "custom" only shows the date picker; the dates count while it is on "custom" (or
    # while the URL already holds dates).
    picking_dates = preset == CUSTOM_RANGE or current not in RANGE_PRESETS
    token = None
    if trigger == RANGE_PRESET_ID and preset in RANGE_PRESETS:
        token = preset
    elif trigger == RANGE_DATES_ID and start and end and picking_dates:
        token = _dates_token(start, end)
    if token is None or token == current:
        return None
    return search_with(search, range=token)


def next_window_search(chosen: str | None, search: str | None) -> str | None:
    """The URL query string after the hours picker changed, or None when the URL stays."""
    current = query_param(search, "window") or DEFAULT_WINDOW
    if current not in WINDOW_PRESETS:
        current = DEFAULT_WINDOW  # the page names the unknown window; rendering keeps it
    if chosen not in WINDOW_PRESETS or chosen == current:
        return None
    return search_with(search, window=chosen)


def _dates_token(start: str, end: str) -> str | None:
    try:
        first = parse_date(start[:10], "start")
        last = parse_date(end[:10], "end")
    except BadParameter:
        return None
    return custom_range(min(first, last), max(first, last))


def register(app: dash.Dash) -> None:
    """Callbacks of the shell controls; pages only render the pickers."""

    @app.callback(
        Output(URL_ID, "search", allow_duplicate=True),
        Input(RANGE_PRESET_ID, "value"),
        Input(RANGE_DATES_ID, "start_date"),
        Input(RANGE_DATES_ID, "end_date"),
        State(URL_ID, "search"),
        prevent_initial_call=True,
    )
    def range_to_url(preset, start, end, search):
        changed = next_range_search(ctx.triggered_id, preset, start, end, search)
        return no_update if changed is None else changed

    @app.callback(
        Output(URL_ID, "search", allow_duplicate=True),
        Input(WINDOW_ID, "value"),
        State(URL_ID, "search"),
        prevent_initial_call=True,
    )
    def window_to_url(chosen, search):
        changed = next_window_search(chosen, search)
        return no_update if changed is None else changed

    app.clientside_callback(
        ClientsideFunction("mc", "showDates"),
        Output(RANGE_DATES_WRAP_ID, "className"),
        Input(RANGE_PRESET_ID, "value"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        ClientsideFunction("mc", "pollSchedule"),
        Output(POLL_ID, "interval"),
        Output(POLL_ID, "disabled"),
        Input(REFRESH_ID, "value"),
        Input(VISIBLE_ID, "data"),
    )
    app.clientside_callback(
        ClientsideFunction("mc", "toggleTheme"),
        Output(THEME_ID, "data"),
        Input(THEME_TOGGLE_ID, "n_clicks"),
        State(THEME_ID, "data"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        ClientsideFunction("mc", "applyTheme"),
        Output(THEME_TOGGLE_ID, "title"),
        Input(THEME_ID, "data"),
    )
    app.clientside_callback(
        ClientsideFunction("mc", "navLinks"),
        Output({"type": "mc-nav", "path": dash.ALL}, "href"),
        Output({"type": "mc-nav", "path": dash.ALL}, "className"),
        Input(URL_ID, "pathname"),
        Input(URL_ID, "search"),
        State({"type": "mc-nav", "path": dash.ALL}, "id"),
    )


def today_utc() -> dt.date:
    return dt.datetime.now(dt.UTC).date()
