"""System health: dependency probes, this machine, host and application history, the pipeline.

Panels backed by the lake (metric history, pipeline counts) use the shared poll path: an
unchanged data version answers ``no_update``. Live panels (probes, psutil, lag) have no data
version; they answer at most once per poll floor, and the probes behind them are memoised, so
many operators polling never multiply probes.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import dash
import dash_bootstrap_components as dbc
import flask
from dash import Input, Output, State, dcc, html

from dashboard import health_figures as figures
from dashboard.components.controls import page_header
from dashboard.components.panel import (
    CLIENT_ID,
    STATE_ID,
    graph_body,
    panel_callback,
    panel_card,
    part,
    render_badge,
    render_status,
    render_tiles,
    tiles_body,
)
from dashboard.components.poll import NOTHING_NEW, PanelAnswer, PanelRunner
from dashboard.components.poll_api import PanelChecks
from dashboard.components.url_state import WINDOW_PRESETS, parse_window
from dashboard.probes import (
    ErrorCounts,
    HostReader,
    ProbeResult,
    ProbeRunner,
    build_probes,
    unconfigured,
)
from data_access.queries import MetricsQuery, PipelineStatsQuery

if TYPE_CHECKING:
    from dashboard.app import Services

log = logging.getLogger(__name__)

PATH = "/health"
HISTORY_HOURS = 24  # without a ``?window=``
# Metric points arrive every 5 minutes: a window moving in 5-minute steps keeps its cache key
# between points.
WINDOW_STEP_SECONDS = 300

STATUS, HOST_LIVE, CORES = "health-status", "health-host-live", "health-cores"
HOST_HISTORY, APP_LATEST, APP_HISTORY = "health-host-history", "health-app-latest", "health-app"
PIPELINE, PIPELINE_LIVE = "health-pipeline", "health-pipeline-live"

STATUS_COLORS = {
    "up": "success",
    "degraded": "warning",
    "down": "danger",
    "unconfigured": "secondary",
}
# Where the identity provider's tile goes when it is not probed: after app, cache and lake.
IDENTITY_POSITION = 3
# The server's status tiles (name, expected status), shown while the first round loads.
STATUS_TILES_KEY = "mc_health_status_tiles"
STATUS_LABELS = {"up": "Up", "degraded": "Degraded", "down": "Down", "unconfigured": "Not set up"}


# ---- queries ----------------------------------------------------------------------------------


def metrics_query(now: float, hours: int = HISTORY_HOURS) -> MetricsQuery:
    """The last ``hours`` of metrics, in a window that moves in whole metric intervals."""
    step_end = (int(now // WINDOW_STEP_SECONDS) + 1) * WINDOW_STEP_SECONDS
    until = dt.datetime.fromtimestamp(step_end, dt.UTC)  # the end of the current step
    since = until - dt.timedelta(hours=hours)
    return MetricsQuery(since=since, until=until)


# Only this page reads these: its cache-hit tile leaves them out, or its own polls (the live
# tile re-reads the pipeline stats every tick, from memory) would count as hits.
OWN_QUERY_KINDS = (MetricsQuery.kind, PipelineStatsQuery.kind)


def pipeline_query(now: float) -> PipelineStatsQuery:
    hour = int(now // 3600) * 3600
    return PipelineStatsQuery(since=dt.datetime.fromtimestamp(hour, dt.UTC) - dt.timedelta(days=1))


# ---- identity provider ------------------------------------------------------------------------


def identity_target(services: Any) -> tuple[str | None, ProbeResult | None]:
    """The IdP discovery URL to probe, or the tile that says why there is none."""
    auth = services.auth
    if auth.mode == "dev":
        return None, unconfigured("Identity provider", "identity", "not configured (dev sign-in)")
    issuer = auth.oidc_issuer
    if auth.mode == "oidc" and issuer:
        return f"{issuer.rstrip('/')}/.well-known/openid-configuration", None
    if auth.mode == "alb":
        return None, unconfigured(
            "Identity provider", "identity", "behind the load balancer (ALB sign-in)"
        )
    return None, unconfigured("Identity provider", "identity", "no issuer configured")


# ---- views ------------------------------------------------------------------------------------


def _status_col(tile: Any) -> dbc.Col:
    return dbc.Col(tile, xs=12, sm=6, lg=4, xxl=2)


def status_tile(result: ProbeResult) -> dbc.Col:
    color = STATUS_COLORS[result.status]
    latency = "" if result.status == "unconfigured" else figures.format_latency(result.latency_ms)
    return _status_col(
        html.Div(
            [
                html.Div(
                    [
                        html.Span(result.name, className="mc-tile-label"),
                        html.Span(
                            STATUS_LABELS[result.status],
                            className=f"badge text-bg-{color} health-status-badge",
                        ),
                    ],
                    className="d-flex justify-content-between align-items-start gap-2",
                ),
                html.Div(latency or "\u00a0", className="mc-tile-value"),
                html.Div(result.detail, className="mc-tile-note health-detail"),
            ],
            className=f"mc-tile health-tile border-start border-4 border-{color}",
            **{"data-status": result.status, "data-probe": result.name},
        )
    )


def pending_status_view(tiles: list[tuple[str, str]]) -> list[Any]:
    """The status tiles while the first probe round is answered: one per probe, named, in
    the loaded tiles' places, their value and detail shimmering. ``tiles`` holds each
    probe's name and the status it is expected to show (its tile's width is the word's)."""

    def tile(name: str, status: str) -> Any:
        if not status:  # the summary tile: its label stands alone, as in status_view
            label: Any = html.Span(name, className="mc-tile-label")
        else:
            label = html.Div(
                [
                    html.Span(name, className="mc-tile-label"),
                    # The status word's room, so the row is as tall as a loaded one.
                    html.Span(
                        STATUS_LABELS[status], className="badge health-status-badge invisible"
                    ),
                ],
                className="d-flex justify-content-between align-items-start gap-2",
            )
        return html.Div(
            [
                label,
                html.Div("\u00a0", className="mc-tile-value mc-skeleton"),
                html.Div("\u00a0", className="mc-tile-note health-detail mc-skeleton"),
            ],
            className="mc-tile mc-tile-pending health-tile border-start border-4",
        )

    return [_status_col(tile(name, status)) for name, status in [("Overall", ""), *tiles]]


def expected_status_tiles(
    probes: ProbeRunner, identity_note: ProbeResult | None
) -> list[tuple[str, str]]:
    """Each status tile's name and expected status, in the order the panel shows them: a
    probe is expected up; the identity provider's note, when it is not probed, is final."""
    tiles = [(probe.name, "up") for probe in probes.probes]
    if identity_note is not None:
        tiles.insert(IDENTITY_POSITION, (identity_note.name, identity_note.status))
    return tiles


def status_view(results: list[ProbeResult]) -> list[Any]:
    overall = figures.worst_status([r.status for r in results])
    summary = _status_col(
        html.Div(
            [
                html.Span("Overall", className="mc-tile-label"),
                html.Div(STATUS_LABELS[overall], className="mc-tile-value"),
                html.Div(
                    f"{sum(r.status == 'up' for r in results)} of "
                    f"{sum(r.status != 'unconfigured' for r in results)} checks up",
                    className="mc-tile-note health-detail",
                ),
            ],
            id="health-overall",
            className=f"mc-tile health-tile border-start border-4 border-{STATUS_COLORS[overall]}",
            **{"data-status": overall},
        )
    )
    return [summary, *(status_tile(r) for r in results)]


def live_badge(measured_at: float, now: float, what: str) -> Any:
    return render_badge(
        {
            "tier": "live",
            "label": "live",
            "age": round(max(0.0, now - measured_at), 1),
            "title": f"{what}, measured on the server that answered",
        }
    )


def state_hours(state: dict | None) -> int:
    """The hours of history the page's view state asks for (the default when it names none)."""
    return parse_window((state or {}).get("window"))[1]


def layout(**query: str) -> html.Div:
    def row(*columns) -> dbc.Row:
        return dbc.Row(list(columns), className="g-3 mb-3")

    window, _hours, problem = parse_window(query.get("window"))
    period = WINDOW_PRESETS[window].lower()
    return html.Div(
        [
            # Panels read the view state: the hours of history the charts show.
            dcc.Store(id=STATE_ID, data={"window": window}),
            page_header(
                "System health",
                None,
                subtitle="Dependencies, this machine, hosts and application, the pipeline",
                window=window,
                problems=(problem,) if problem else (),
            ),
            row(
                dbc.Col(
                    panel_card(
                        STATUS,
                        "Status",
                        dbc.Row(
                            pending_status_view(
                                flask.current_app.extensions.get(STATUS_TILES_KEY, [])
                            ),
                            id=part(STATUS, "content"),
                            className="g-3",
                        ),
                        kind="tiles",
                        subtitle="Each dependency probed with a timeout; results kept a few "
                        "seconds",
                        class_name="mc-panel-flat",
                    )
                )
            ),
            row(
                dbc.Col(
                    panel_card(
                        HOST_LIVE,
                        "This machine",
                        tiles_body(HOST_LIVE, count=6),
                        kind="tiles",
                        subtitle="Live values of the server that answered",
                        class_name="mc-panel-flat",
                    ),
                    lg=9,
                ),
                dbc.Col(
                    panel_card(
                        CORES,
                        "CPU per core",
                        graph_body(CORES, height=180),
                        kind="figure",
                        subtitle="This machine, now",
                    ),
                    lg=3,
                ),
            ),
            row(
                dbc.Col(
                    panel_card(
                        HOST_HISTORY,
                        f"Hosts, {period}",
                        graph_body(HOST_HISTORY, height=460),
                        kind="figure",
                        subtitle="Collected metrics per web host",
                    )
                )
            ),
            row(
                dbc.Col(
                    panel_card(
                        APP_LATEST,
                        "Application",
                        tiles_body(APP_LATEST, count=4),
                        kind="tiles",
                        subtitle="Latest collected point, all hosts",
                        class_name="mc-panel-flat",
                    )
                )
            ),
            row(
                dbc.Col(
                    panel_card(
                        APP_HISTORY,
                        f"Application, {period}",
                        graph_body(APP_HISTORY, height=460),
                        kind="figure",
                        subtitle="Requests, latency, errors and users, all hosts",
                    )
                )
            ),
            row(
                dbc.Col(
                    panel_card(
                        PIPELINE,
                        "Pipeline",
                        tiles_body(PIPELINE, count=4),
                        kind="tiles",
                        subtitle="Uploads processed and quarantined",
                        class_name="mc-panel-flat mc-tiles-two-line",
                    ),
                    lg=8,
                ),
                dbc.Col(
                    panel_card(
                        PIPELINE_LIVE,
                        "Freshness",
                        tiles_body(PIPELINE_LIVE, count=2),
                        kind="tiles",
                        subtitle="Lag and cache hits, now",
                        class_name="mc-panel-flat mc-tiles-two-line",
                    ),
                    lg=4,
                ),
            ),
        ]
    )


# ---- live panels -------------------------------------------------------------------------------


def live_panel_callback(
    app: dash.Dash,
    runner: PanelRunner,
    panel: str,
    kind: str,
    *,
    version: Callable[[], str] | None = None,
) -> Callable[[Callable[[str | None], PanelAnswer]], Callable[[str | None], PanelAnswer]]:
    """Register the poll callback of a panel with no data version (values measured now).

    The decorated function gets the version on screen and returns a ``PanelAnswer``. The poll
    floor applies as on every panel; anything raised becomes a degraded panel, never an error.
    For the panel poll the panel has something new at every tick, or, given ``version``,
    whenever that differs from the version on screen.
    """

    def check(shown: str | None, _tab: str, _state: object) -> bool:
        return version is None or shown != version()

    def decorator(
        function: Callable[[str | None], PanelAnswer],
    ) -> Callable[[str | None], PanelAnswer]:
        content = (
            Output(part(panel, "figure"), "data")
            if kind == "figure"
            else Output(part(panel, "content"), "children")
        )

        @functools.wraps(function)
        def guarded(_tick: Any, shown: str | None, client: str | None) -> tuple:
            allowed = runner.floor.allow(client or "-", panel)
            if shown is not None and not allowed:
                return NOTHING_NEW.outputs()
            try:
                return function(shown).outputs()
            except Exception:
                log.exception("panel %s callback failed", panel)
                return runner.degraded("This panel could not be updated.").outputs()

        app.callback(
            content,
            Output(part(panel, "version"), "data"),
            Output(part(panel, "badge"), "children"),
            Output(part(panel, "status"), "children"),
            Input(part(panel, "tick"), "data"),
            State(part(panel, "version"), "data"),
            State(CLIENT_ID, "data"),
        )(guarded)
        PanelChecks.of(app.server).add(panel, check)
        return function

    return decorator


# ---- registration ------------------------------------------------------------------------------


def register(app: dash.Dash, services: Services) -> None:
    runner = services.panels
    data = services.data
    settings = services.settings
    identity_url, identity_note = identity_target(services)

    def error_counts() -> ErrorCounts:
        return ErrorCounts(data.counters.cache_errors, data.counters.lake_errors)

    probes = ProbeRunner(
        build_probes(
            data.stores,
            error_counts=error_counts,
            endpoints=settings.health_endpoints,
            identity_url=identity_url,
            timeout_seconds=settings.probe_timeout_seconds,
            started_at=time.time(),
        ),
        timeout_seconds=settings.probe_timeout_seconds,
    )
    host = HostReader()
    app.server.extensions[STATUS_TILES_KEY] = expected_status_tiles(probes, identity_note)

    dash.register_page(
        "health", path=PATH, name="Health", title="System health", layout=layout, order=30
    )

    @live_panel_callback(
        app,
        runner,
        STATUS,
        "tiles",
        version=lambda: f"probe-round:{probes.latest_round()[0]}",
    )
    def status(shown):
        round_number, results = probes.latest_round()
        version = f"probe-round:{round_number}"
        if version == shown:
            return NOTHING_NEW
        shown_results = list(results)
        if identity_note is not None:
            shown_results.insert(IDENTITY_POSITION, identity_note)
        now = time.time()
        badge = live_badge(probes.probed_at, now, "Probed")
        problems = [r.name for r in shown_results if r.status in ("down", "degraded")]
        message = f"Needs attention: {', '.join(problems)}." if problems else None
        return PanelAnswer(status_view(shown_results), version, badge, render_status(message))

    @live_panel_callback(app, runner, HOST_LIVE, "tiles")
    def host_live(_shown):
        snapshot = host.snapshot()
        now = time.time()
        tiles = render_tiles(figures.host_tiles(snapshot))
        return PanelAnswer(tiles, f"{now:.3f}", live_badge(now, now, "Read"), None)

    @live_panel_callback(app, runner, CORES, "figure")
    def cores(_shown):
        snapshot = host.snapshot()
        now = time.time()
        figure = figures.cores_figure(snapshot.cpu_per_core)
        return PanelAnswer(figure, f"{now:.3f}", live_badge(now, now, "Read"), None)

    @panel_callback(app, runner, HOST_HISTORY, "figure")
    def host_history(_tick, shown, client, state):
        hours = state_hours(state)
        query = metrics_query(time.time(), hours)
        sample_hosts = services.settings.sample_hosts
        return runner.answer(
            HOST_HISTORY,
            query,
            shown,
            client,
            lambda frame: figures.host_history(frame, sample_hosts, hours=hours),
        ).outputs()

    @panel_callback(app, runner, APP_LATEST, "tiles")
    def app_latest(_tick, shown, client, state):
        query = metrics_query(time.time(), state_hours(state))
        build = lambda frame: render_tiles(figures.app_tiles(frame))  # noqa: E731
        return runner.answer(APP_LATEST, query, shown, client, build).outputs()

    @panel_callback(app, runner, APP_HISTORY, "figure")
    def app_history(_tick, shown, client, state):
        hours = state_hours(state)
        query = metrics_query(time.time(), hours)
        build = lambda frame: figures.app_history(frame, hours=hours)  # noqa: E731
        return runner.answer(APP_HISTORY, query, shown, client, build).outputs()

    @panel_callback(app, runner, PIPELINE, "tiles")
    def pipeline(_tick, shown, client, _state):
        query = pipeline_query(time.time())
        build = lambda frame: render_tiles(  # noqa: E731
            figures.pipeline_tiles(figures.pipeline_numbers(frame))
        )
        return runner.answer(PIPELINE, query, shown, client, build).outputs()

    @live_panel_callback(app, runner, PIPELINE_LIVE, "tiles")
    def pipeline_live(_shown):
        now = time.time()
        result = data.fetch(pipeline_query(now))  # memoised: the pipeline panel read it
        numbers = figures.pipeline_numbers(result.data)
        hit_ratio = data.counters.hit_ratio(excluding=OWN_QUERY_KINDS)
        tiles = figures.pipeline_live_tiles(numbers, hit_ratio, now)
        return PanelAnswer(
            render_tiles(tiles), f"{now:.3f}", live_badge(now, now, "Computed"), None
        )
