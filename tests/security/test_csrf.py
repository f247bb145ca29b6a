"""Cross-site request forgery: every state-changing route the app has refuses a request a
browser marks as cross-site, and still serves the same request from the site itself.

The routes are read from the app's URL map, so a new POST route is covered the day it is
added. Routes under the API-key prefixes never read the session cookie (a forged request
carries no key): there the proof is that no cookie gets in, i.e. without a key it is refused.
Cookies themselves are ``SameSite=Lax`` (tests/auth/test_oidc_flow.py), the first lock; these
tests are the second, which holds even for a browser that ignores SameSite.
"""

from __future__ import annotations

import re

from flask import Flask

from dashboard.security import SecuritySettings

UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
FORGED_HEADERS = [
    {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    {"Origin": "https://evil.example"},  # an older browser: Origin only
    {"Origin": "null"},  # a sandboxed frame or a privacy redirect
    {"Sec-Fetch-Site": "cross-site"},  # a browser that sent no Origin
]
SAMPLE_ARGUMENTS = {"route": "pageview", "view_name": "fleet-daily"}


def _state_changing_routes(server: Flask) -> list[tuple[str, str]]:
    routes = []
    for rule in server.url_map.iter_rules():
        for method in sorted(set(rule.methods or ()) & set(UNSAFE)):
            path = rule.rule
            for name in rule.arguments:
                path = re.sub(rf"<(?:[^:<>]+:)?{name}>", SAMPLE_ARGUMENTS.get(name, "x"), path)
            routes.append((method, path))
    return sorted(set(routes))


def _is_api(path: str) -> bool:
    return path.startswith(SecuritySettings().api_prefixes)


def test_the_app_has_the_state_changing_routes_we_expect(dev_app: Flask) -> None:
    routes = _state_changing_routes(dev_app)
    assert ("POST", "/_dash-update-component") in routes  # alerts acknowledge/resolve too
    assert ("POST", "/logout") in routes


def test_every_state_changing_route_refuses_a_cross_site_request(dev_app: Flask) -> None:
    client = dev_app.test_client()
    for method, path in _state_changing_routes(dev_app):
        for headers in FORGED_HEADERS:
            response = client.open(path, method=method, headers=headers, json={})
            if _is_api(path):
                assert response.status_code in (400, 401, 403, 404, 415), (method, path)
                continue
            assert response.status_code == 403, (method, path, headers, response.status_code)
            assert "Cross-site request refused" in response.get_data(as_text=True)


def test_the_same_requests_from_the_site_itself_are_not_refused_as_cross_site(
    dev_app: Flask,
) -> None:
    client = dev_app.test_client()
    same_site = [
        {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"},
        {},  # curl, a device: no Origin at all
    ]
    for method, path in _state_changing_routes(dev_app):
        for headers in same_site:
            response = client.open(path, method=method, headers=headers, json={})
            assert "Cross-site request refused" not in response.get_data(as_text=True), (
                method,
                path,
                headers,
            )


def test_logout_by_a_forged_post_keeps_the_session(oidc_app: Flask) -> None:
    client = oidc_app.test_client()
    with client.session_transaction() as session:
        session["marker"] = "still here"
    forged = client.post("/logout", headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403
    with client.session_transaction() as session:
        assert session.get("marker") == "still here"
    own = client.post("/logout", headers={"Origin": "http://localhost"})
    assert own.status_code in (302, 303)
    with client.session_transaction() as session:
        assert "marker" not in session
