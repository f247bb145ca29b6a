"""App factory: settings from the environment, stores, data service, auth, pages."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import dash
from dash import dcc, html
from dash.exceptions import DependencyException
from flask import Flask, Response, jsonify, request

from auth.guard import current_user, guard_request, init_auth, protect_dash_outputs
from auth.settings import AuthSettings
from configuration.base import LogSettings
from dashboard import export
from dashboard.cache import init_caches
from dashboard.components import controls, panel
from dashboard.components.poll import PanelRunner
from dashboard.components.poll_api import register_panel_poll
from dashboard.observability import (
    bind_request_id,
    configure_logging,
    echo_request_id,
    unbind_request_id,
)
from dashboard.readiness import ReadinessSettings, register_readiness
from dashboard.request_hooks import RequestHooks, register_hooks
from dashboard.request_metrics import MetricsSettings, register_request_metrics
from dashboard.security import SecuritySettings, init_security, log_callback_error
from dashboard.settings import DashboardSettings
from data_access.factory import build_stores
from data_access.service import DataService
from data_access.settings import DataSettings
from live.ingest import register_ingest
from live.settings import IngestSettings
from live.uploads import register_uploads

ASSETS = Path(__file__).resolve().parent.parent / "assets"

# Sets the stored theme before the first paint, so a dark wall screen never flashes white.
_THEME_BOOT = """<script>
try {
  var stored = JSON.parse(window.localStorage.getItem("mc-theme"));
  var dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  var theme = stored === "dark" || stored === "light" ? stored : (dark ? "dark" : "light");
  document.documentElement.setAttribute("data-bs-theme", theme);
  document.documentElement.setAttribute("data-ag-theme-mode", theme);
} catch (error) {}
</script>"""

INDEX_STRING = f"""<!DOCTYPE html>
<html lang="en">
    <head>
        {{%metas%}}
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>{{%title%}}</title>
        {_THEME_BOOT}
        {{%favicon%}}
        {{%css%}}
    </head>
    <body>
        {{%app_entry%}}
        <footer>
            {{%config%}}
            {{%scripts%}}
            {{%renderer%}}
        </footer>
    </body>
</html>"""


# Where create_app keeps the request hooks it registered, in the order they run.
REQUEST_HOOKS_KEY = "mc_request_hooks"

# Component-id prefixes whose callbacks need the operator role (matched against dict ids' values).
OPERATOR_OUTPUTS = {
    "customer-": "operator",
    "screen-customer": "operator",
    "revenue-orders": "operator",  # order rows carry user ids
}


@dataclass(frozen=True)
class Services:
    """What callbacks need, handed to each page's ``register`` explicitly."""

    data: DataService
    settings: DashboardSettings
    # The shared poll path: version check, floor, figure cache, degraded answers.
    panels: PanelRunner
    # How users sign in: the health page probes the identity provider it names.
    auth: AuthSettings


def create_app(env: Mapping[str, str] | None = None) -> Flask:
    env = os.environ if env is None else env
    data_settings = DataSettings.from_env(env)
    dashboard_settings = DashboardSettings.from_env(env)
    auth_settings = AuthSettings.from_env(env)

    configure_logging(LogSettings.from_env(env).log_level)
    server = Flask(__name__)
    stores = build_stores(data_settings)
    # flask-caching: per worker, or Redis shared by every worker and instance (REDIS_URL).
    caches = init_caches(
        server,
        data_settings.redis_url,
        memo_seconds=data_settings.memo_seconds,
        figure_items=dashboard_settings.figure_cache_items,
    )
    data = DataService(
        stores, data_settings, memo=caches.memo, claim=caches.claim, release=caches.release
    )
    metrics = register_request_metrics(
        server, MetricsSettings.from_env(env), data_service=data, records=stores.records
    )
    init_auth(server, auth_settings, stores.records, register_guard=False)
    ingest_settings = IngestSettings.from_env(env)
    register_ingest(server, stores, ingest_settings)
    register_uploads(server, stores, ingest_settings)
    register_readiness(server, stores, ReadinessSettings.from_auth(auth_settings))

    services = Services(
        data=data,
        settings=dashboard_settings,
        panels=panel.new_runner(
            data,
            floor_seconds=dashboard_settings.refresh_floor_ms / 1000,
            figure_cache_items=dashboard_settings.figure_cache_items,
            caches=caches,
        ),
        auth=auth_settings,
    )

    @server.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @server.errorhandler(DependencyException)
    def unknown_asset(_exc: DependencyException):
        # Dash raises this for a component-suite path it does not serve: a 404, not a 500.
        return jsonify(error="not found"), 404

    app = dash.Dash(
        __name__,
        server=server,
        use_pages=True,
        pages_folder="",
        assets_folder=str(ASSETS),
        title=dashboard_settings.title,
        # Bootstrap is served from assets/: the dashboard works without reaching a CDN.
        external_stylesheets=[],
        index_string=INDEX_STRING,
        suppress_callback_exceptions=True,
        # A callback that raises answers "no update" and logs, never a 500.
        on_error=log_callback_error,
    )
    from dashboard.pages import alerts, health, inspect, lake, overview, revenue, screen_time

    for page in (overview, screen_time, revenue, alerts, health, lake, inspect):
        page.register(app, services)
    controls.register(app)
    panel.register_clientside(app)
    not_found_status = _unknown_pages_are_404(
        {page["path"] for page in dash.page_registry.values()}
    )
    server.register_blueprint(export.blueprint(services))
    register_panel_poll(server, services.panels.floor)
    # Per-customer rows are for operators; viewers see the fleet and business aggregates.
    protect_dash_outputs(server, {**OPERATOR_OUTPUTS, alerts.ADMIN_PREFIX: "admin"})
    security = init_security(server, app, SecuritySettings.from_env(env))
    app.layout = _shell(dashboard_settings, auth_settings)
    server.extensions["mission_control"] = services
    # Dash finishes its setup on a worker's first request and marks it done before it is:
    # a script request racing it could get a 404 and leave the page on "Loading...". Run it
    # here, before any request can arrive. Only Dash's own hooks are registered yet, so the
    # warm-up is not counted as a request.
    with server.test_request_context("/healthz"):
        server.preprocess_request()
    hooks = RequestHooks(
        before=(
            bind_request_id,  # first: requests refused below still carry an id
            metrics.start_timer,  # ahead of the guard: refusals are measured too
            guard_request,  # who is asking; anonymous callers stop here (401/redirect)
            security.refuse_cross_site_writes,  # public routes too (/logout)
            security.refuse_malformed_callbacks,  # before any later hook reads the body
        ),
        after=(
            security.add_headers,
            not_found_status,
            metrics.record,  # after not_found_status: counts the final status
            echo_request_id,
        ),
        teardown=(metrics.count_unanswered, unbind_request_id),
    )
    register_hooks(server, hooks)
    server.extensions[REQUEST_HOOKS_KEY] = hooks
    return server


def _unknown_pages_are_404(page_paths: set[str]) -> Callable[[Response], Response]:
    """Dash serves its page shell for any path; one that names no page says "not found" on
    screen and now also in its status, for crawlers, monitors and link checkers."""

    def not_found_status(response: Response) -> Response:
        rule = request.url_rule.rule if request.url_rule is not None else None
        path = request.path.rstrip("/") or "/"
        if rule == "/<path:path>" and response.status_code == 200 and path not in page_paths:
            response.status_code = 404
        return response

    return not_found_status


def _shell(settings: DashboardSettings, auth_settings: AuthSettings):
    def layout():
        user = current_user()
        banner = None
        if auth_settings.mode == "dev":
            banner = html.Div(
                "Development sign-in: no identity provider, local user only.",
                className="mc-dev-banner",
            )
        # Sorted by each page's order; a panel's Inspect view is reached from its panel.
        pages = [page for page in dash.page_registry.values() if page.get("in_navigation", True)]
        header = html.Header(
            html.Div(
                [
                    html.A(
                        [html.Span(className="mc-logo"), html.Span(settings.title)],
                        href="/",
                        className="mc-brand",
                    ),
                    controls.nav_links(pages),
                    html.Div(
                        [
                            controls.freshness_indicator(settings.refresh_default_ms),
                            controls.refresh_picker(
                                settings.refresh_choices_ms, settings.refresh_default_ms
                            ),
                            controls.theme_toggle(),
                        ],
                        className="mc-header-tools",
                    ),
                    # Who is signed in and the way out: on a phone, beside the title.
                    html.Div(
                        [
                            html.Span(
                                [
                                    html.Span(user.name or user.email, className="mc-user-name")
                                    if user
                                    else None,
                                    html.Span(user.role, className="mc-role") if user else None,
                                ],
                                className="mc-user",
                                title=user.email if user else "",
                            ),
                            # A page that asks, then signs out with a POST.
                            html.A("Sign out", href="/logout", className="mc-signout")
                            if user
                            else None,
                        ],
                        className="mc-account",
                    ),
                ],
                className="mc-header-inner",
            ),
            className="mc-header",
        )
        return html.Div(
            [
                banner,
                header,
                html.Main(dash.page_container, className="mc-main"),
                dcc.Location(id=controls.URL_ID, refresh="callback-nav"),
                dcc.Interval(
                    id=panel.POLL_ID,
                    interval=settings.refresh_default_ms or max(settings.refresh_choices_ms),
                    disabled=settings.refresh_default_ms == 0,
                ),
                dcc.Store(id=panel.VISIBLE_ID, data=True),
                # One id per page load, i.e. per browser tab: the server's poll floor is per tab.
                dcc.Store(id=panel.CLIENT_ID, data=uuid.uuid4().hex),
                dcc.Store(id=panel.THEME_ID, storage_type="local"),
            ],
            className="mc-app",
        )

    return layout
