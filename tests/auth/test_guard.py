"""The route guard, Dash callback rules and session lifetime, without a provider."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import dash
import pytest
from dash import Input, Output, dcc, html
from flask import Flask
from flask.testing import FlaskClient

from auth import init_auth, protect_dash_outputs, require_role
from auth.context import auth_state
from auth.guard import dash_output_ids, is_public_rule
from auth.roles import ROLES, User
from auth.session import SID_KEY
from auth.settings import AuthSettings
from data_access.local import SqliteRecordStore
from devtools.servers import LOOPBACK, free_port
from tests.auth.conftest import DASH_RULES, audit_events, build_app

HTML = {"Accept": "text/html,application/xhtml+xml"}
# What the guard lets through without a user, by URL rule (see auth.guard's docstring).
EXPECTED_PUBLIC_RULES = {
    "/healthz",
    "/readyz",
    "/login",
    "/auth/callback",
    "/logout",
    "/signed-out",
    "/_favicon.ico",
    "/static/<path:filename>",
    "/assets/<path:filename>",
    "/_dash-component-suites/<string:package_name>/<path:fingerprinted_path>",
}


def oidc_settings(**overrides: str) -> AuthSettings:
    # Nothing listens at this issuer: these tests never get as far as the provider.
    env = {
        "AUTH_MODE": "oidc",
        "SECRET_KEY": "k" * 40,
        "OIDC_ISSUER": f"http://{LOOPBACK}:{free_port()}",
        "OIDC_CLIENT_ID": "client",
        "OIDC_CLIENT_SECRET": "secret",
        "ROLE_MAP": "admins=admin,operators=operator,viewers=viewer",
        "SESSION_IDLE_MINUTES": "30",
        "SESSION_MAX_HOURS": "2",
        **overrides,
    }
    return AuthSettings.from_env(env)


def sign_in_as(client: FlaskClient, role: str) -> str:
    """Stores a session (at the app's clock) and names it in the client's cookie, as the
    callback would; returns the session id."""
    sessions = auth_state(client.application).sessions
    assert sessions is not None
    user = User(
        subject=f"sub-{role}",
        email=f"{role}@example.test",
        name=role.title(),
        role=role,
        claims={"groups": [f"{role}s"]},
    )
    session_id = sessions.create(user, id_token="", user_agent="test", client_ip=LOOPBACK)
    with client.session_transaction() as session:
        session[SID_KEY] = session_id
    return session_id


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(1_700_000_000.0)


@pytest.fixture
def records(tmp_path: Path, clock: Clock) -> SqliteRecordStore:
    """The record store on the test's clock, so session records expire as the app sees it."""
    return SqliteRecordStore(tmp_path / "records.sqlite", clock=clock)


@pytest.fixture
def app(records, clock) -> Flask:
    server = build_app(oidc_settings(), records)
    auth_state(server).clock = clock
    return server


def build_dash_app() -> Flask:
    """A real Dash app behind init_auth, so Dash's own routes are in the URL map."""
    server = Flask("dash-under-test")
    init_auth(server, oidc_settings(), None)
    server.add_url_rule("/healthz", "healthz", lambda: "ok")
    server.add_url_rule("/readyz", "readyz", lambda: "ready")
    app = dash.Dash("dash_under_test", server=server)
    app.layout = html.Div([dcc.Input(id="customer-id"), html.Div(id="customer-detail")])

    @app.callback(Output("customer-detail", "children"), Input("customer-id", "value"))
    def show(value: str) -> str:
        return f"customer {value}"

    protect_dash_outputs(server, DASH_RULES)
    return server


def sample_path(rule: str) -> str:
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda match: f"sample-{match.group(1)}", rule)


def test_every_route_but_the_allowlist_needs_a_user():
    server = build_dash_app()
    client = server.test_client()
    rules = list(server.url_map.iter_rules())
    assert any(rule.rule == "/_dash-update-component" for rule in rules)  # Dash is mounted

    public_in_map = set()
    for rule in rules:
        method = "GET" if "GET" in rule.methods else sorted(rule.methods - {"OPTIONS"})[0]
        response = client.open(sample_path(rule.rule), method=method, headers=HTML)
        asked_to_sign_in = response.status_code == 401 or (
            response.status_code == 302 and response.location.startswith("/login?")
        )
        if is_public_rule(rule.rule):
            public_in_map.add(rule.rule)
            assert not asked_to_sign_in, f"{rule.rule} is public but asked for sign-in"
        else:
            assert asked_to_sign_in, f"{method} {rule.rule} answered {response.status_code}"

    assert public_in_map == EXPECTED_PUBLIC_RULES


def test_a_page_load_is_redirected_to_login_with_next(app):
    response = app.test_client().get("/revenue?week=12", headers=HTML)

    assert response.status_code == 302
    location = urlsplit(response.location)
    assert location.path == "/login"
    assert parse_qs(location.query)["next"] == ["/revenue?week=12"]


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/revenue", {"Accept": "application/json"}),
        ("GET", "/revenue", {**HTML, "Sec-Fetch-Mode": "cors"}),
        ("GET", "/_dash-layout", HTML),
        ("POST", "/_dash-update-component", {"Content-Type": "application/json"}),
    ],
)
def test_scripts_get_401_json_not_a_redirect(app, method, path, headers):
    response = app.test_client().open(path, method=method, headers=headers, data="{}")

    assert response.status_code == 401
    assert response.json["status"] == 401
    assert response.json["login"].startswith("/login?next=")


def test_signed_in_user_reaches_pages(app, clock):
    client = app.test_client()
    sign_in_as(client, "viewer")

    response = client.get("/revenue", headers=HTML)

    assert response.status_code == 200
    assert response.json["role"] == "viewer"


def test_idle_session_ends(app, clock):
    client = app.test_client()
    sign_in_as(client, "viewer")
    idle = auth_state(app).idle_seconds

    clock.now += idle - 1
    still_in = client.get("/", headers=HTML)
    clock.now += idle + 1
    after_idle = client.get("/", headers=HTML)

    assert still_in.status_code == 200
    assert after_idle.status_code == 302


def test_active_session_still_ends_at_the_absolute_limit(app, clock):
    client = app.test_client()
    signed_in_at = clock.now
    sign_in_as(client, "viewer")
    state = auth_state(app)
    step = state.idle_seconds / 2

    statuses = []
    while clock.now - signed_in_at <= state.max_seconds + step:
        statuses.append((clock.now - signed_in_at, client.get("/", headers=HTML).status_code))
        clock.now += step

    assert all(code == 200 for age, code in statuses if age < state.max_seconds)
    assert all(code == 302 for age, code in statuses if age >= state.max_seconds)
    assert any(age > state.max_seconds for age, _ in statuses)


def dash_body(output: str, outputs: object) -> dict:
    return {"output": output, "outputs": outputs, "inputs": [], "changedPropIds": []}


@pytest.mark.parametrize(
    "body",
    [
        dash_body("customer-table.data", {"id": "customer-table", "property": "data"}),
        # Dash picks the callback by "output": naming a harmless one in "outputs" is no way in.
        dash_body("customer-table.data", {"id": "kpi-revenue", "property": "figure"}),
        dash_body("kpi-revenue.figure", {"id": "customer-table", "property": "data"}),
        dash_body(
            "..kpi-revenue.figure...customer-table.data..",
            [
                {"id": "kpi-revenue", "property": "figure"},
                {"id": "customer-table", "property": "data"},
            ],
        ),
        dash_body(
            '{"index":3,"type":"customer-row"}.children',
            [[{"id": {"index": 3, "type": "customer-row"}, "property": "children"}]],
        ),
        dash_body("customer-table.data@0f3a", {"id": "customer-table", "property": "data"}),
    ],
    ids=["plain", "output-only", "outputs-only", "multi", "pattern", "duplicate"],
)
def test_viewer_cannot_write_operator_outputs(app, records, clock, body):
    client = app.test_client()
    sign_in_as(client, "viewer")

    response = client.post("/_dash-update-component", json=body)

    assert response.status_code == 403
    assert response.json["needed"] == "operator"
    refused = [entry for entry in audit_events(records) if entry["event"] == "refused"]
    assert refused[-1]["who"] == "viewer@example.test"


@pytest.mark.parametrize(
    ("role", "output", "allowed"),
    [
        ("viewer", "kpi-revenue.figure", True),
        ("operator", "customer-table.data", True),
        ("operator", "alert-ack-button.n_clicks", False),
        ("admin", "alert-ack-button.n_clicks", True),
    ],
)
def test_dash_rules_follow_the_role_order(app, clock, role, output, allowed):
    client = app.test_client()
    sign_in_as(client, role)
    component = output.rpartition(".")[0]

    response = client.post(
        "/_dash-update-component", json=dash_body(output, {"id": component, "property": "x"})
    )

    assert (response.status_code == 200) is allowed


def test_unreadable_dash_body_is_a_400(app, clock):
    client = app.test_client()
    sign_in_as(client, "admin")

    response = client.post(
        "/_dash-update-component", data="not json", content_type="application/json"
    )

    assert response.status_code == 400


def test_cross_site_post_is_refused(app, clock):
    client = app.test_client()
    sign_in_as(client, "admin")
    body = dash_body("kpi-revenue.figure", {"id": "kpi-revenue", "property": "figure"})

    foreign = client.post(
        "/_dash-update-component", json=body, headers={"Origin": "http://evil.example"}
    )
    own = client.post("/_dash-update-component", json=body, headers={"Origin": "http://localhost"})

    assert foreign.status_code == 403
    assert own.status_code == 200


def test_export_view_needs_operator(app, records, clock):
    viewer, operator = app.test_client(), app.test_client()
    sign_in_as(viewer, "viewer")
    sign_in_as(operator, "operator")

    refused = viewer.get("/export.csv", headers=HTML)
    allowed = operator.get("/export.csv", headers=HTML)

    assert refused.status_code == 403
    assert "operator" in refused.text
    assert allowed.status_code == 200
    events = [entry["event"] for entry in audit_events(records)]
    assert events == ["refused", "export"]


def test_dash_output_ids_reads_every_form():
    body = {
        "output": '..{"type":"customer-row","index":1}.children...kpi.figure..',
        "outputs": [
            {"id": {"type": "customer-row", "index": 1}, "property": "children"},
            [{"id": "alert-ack-1", "property": "n_clicks"}],
        ],
    }

    assert set(dash_output_ids(body)) == {"customer-row", "kpi", "alert-ack-1"}


def test_unknown_roles_are_rejected_up_front(app):
    with pytest.raises(ValueError, match="unknown role"):
        require_role("superuser")
    with pytest.raises(ValueError, match="prefix"):
        protect_dash_outputs(app, {"customer-": "superuser"})
    with pytest.raises(RuntimeError, match="init_auth"):
        protect_dash_outputs(Flask("bare"), {"customer-": ROLES[0]})


def test_init_auth_twice_is_refused(app):
    with pytest.raises(RuntimeError, match="already"):
        init_auth(app, oidc_settings(), None)
