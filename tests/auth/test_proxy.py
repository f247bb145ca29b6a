"""Behind the load balancer: ProxyFix makes redirect URIs https and the client IP right."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from auth.settings import AuthSettings
from tests.auth.conftest import audit_events, build_app
from tests.auth.test_guard import sign_in_as

PROXY_ADDRESS = "10.0.0.2"
FORWARDED = {
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "dash.example.test",
    "X-Forwarded-For": "203.0.113.9",
    "Accept": "text/html",
}


def redirect_uri_sent(response) -> str:
    return parse_qs(urlsplit(response.location).query)["redirect_uri"][0]


def test_forwarded_proto_and_host_are_trusted_when_configured(oidc_provider, records):
    env = oidc_provider.env(PROXY_FIX_X_PROTO="1", PROXY_FIX_X_HOST="1")
    app = build_app(AuthSettings.from_env(env), records)

    response = app.test_client().get("/login", headers=FORWARDED)

    assert response.status_code == 302
    assert redirect_uri_sent(response) == "https://dash.example.test/auth/callback"
    assert "Secure" in response.headers["Set-Cookie"]


def test_forwarded_headers_are_ignored_without_proxy_fix(oidc_provider, records):
    app = build_app(AuthSettings.from_env(oidc_provider.env()), records)

    response = app.test_client().get("/login", headers=FORWARDED)

    assert redirect_uri_sent(response) == "http://localhost/auth/callback"
    assert "Secure" not in response.headers["Set-Cookie"]


@pytest.mark.parametrize(("x_for", "expected_ip"), [("1", "203.0.113.9"), ("0", PROXY_ADDRESS)])
def test_client_ip_in_the_audit_log_follows_proxy_fix(oidc_provider, records, x_for, expected_ip):
    app = build_app(AuthSettings.from_env(oidc_provider.env(PROXY_FIX_X_FOR=x_for)), records)
    client = app.test_client()
    sign_in_as(client, "operator")

    client.get("/export.csv", headers=FORWARDED, environ_base={"REMOTE_ADDR": PROXY_ADDRESS})

    assert [entry["ip"] for entry in audit_events(records)] == [expected_ip]


def test_configured_redirect_uri_is_used_verbatim(oidc_provider, records):
    configured = "https://mission-control.example.test/auth/callback"
    app = build_app(AuthSettings.from_env(oidc_provider.env(OIDC_REDIRECT_URI=configured)), records)

    response = app.test_client().get("/login")

    assert redirect_uri_sent(response) == configured
