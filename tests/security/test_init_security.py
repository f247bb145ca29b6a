"""``init_security`` on a bare Flask app: headers and the cross-site refusal (the app-level
tests run it inside ``create_app``, whose hook order tests/unit/test_app.py checks)."""

from __future__ import annotations

import pytest
from flask import Flask, request

from dashboard.request_hooks import register_hooks
from dashboard.security import SecuritySettings, init_security


def _app() -> Flask:
    server = Flask(__name__)

    @server.post("/api/ingest/pageview")
    def ingest():
        return {"accepted": 1}, 202

    @server.post("/logout")
    def logout():
        return {"signed_out": True}

    @server.get("/")
    def home():
        return "<p>home</p>"

    return server


def test_headers_on_a_bare_app() -> None:
    server = _app()
    security = init_security(
        server, None, SecuritySettings(hsts_seconds=60, hsts_include_subdomains=False)
    )
    register_hooks(server, security.hooks())
    client = server.test_client()
    page = client.get("/")
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "script-src 'self';" in page.headers["Content-Security-Policy"]
    assert "Strict-Transport-Security" not in page.headers
    secure = client.get("/", base_url="https://localhost")
    assert secure.headers["Strict-Transport-Security"] == "max-age=60"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "null"},
        {"Origin": "http://localhost.evil.example"},
    ],
)
def test_cross_site_writes_are_refused_but_api_key_routes_are_not(headers) -> None:
    server = _app()
    register_hooks(server, init_security(server, None).hooks())
    client = server.test_client()
    assert client.post("/logout", headers=headers).status_code == 403
    assert client.post("/api/ingest/pageview", headers=headers).status_code == 202
    # Reads are never refused: a link from another site must open the dashboard.
    assert client.get("/", headers=headers).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Origin": "http://localhost"},
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"},
        {"Sec-Fetch-Site": "none"},
    ],
)
def test_same_site_writes_pass(headers) -> None:
    server = _app()
    register_hooks(server, init_security(server, None).hooks())
    assert server.test_client().post("/logout", headers=headers).status_code == 200


def test_json_nested_past_the_recursion_limit_is_bad_json_not_a_crash() -> None:
    server = _app()
    seen: list[object] = []

    @server.post("/echo")
    def echo():
        seen.append(request.get_json(silent=True))
        return {"parsed": request.get_json() is not None}

    init_security(server, None)
    client = server.test_client()
    deep = "[" * 100_000 + "]" * 100_000
    response = client.post("/echo", data=deep, content_type="application/json")
    assert response.status_code == 400  # Flask's "failed to decode JSON", not a 500
    assert seen == [None]
    assert client.post("/echo", json={"a": [1]}).get_json() == {"parsed": True}
    assert server.json.dumps({"b": 1}) == '{"b": 1}'  # the app's own provider still writes
