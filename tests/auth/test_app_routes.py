"""The real dashboard's URL map: every route asks for sign-in except an explicit allowlist."""

from __future__ import annotations

from pathlib import Path

from auth.guard import is_public_rule
from dashboard import create_app
from tests.auth.test_guard import HTML, oidc_settings, sample_path

# Public, and why: probes (/healthz, /readyz), the way in and out, static assets (no data),
# and machine endpoints that check their own credentials (API keys, metrics token).
EXPECTED_PUBLIC = {
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
    "/api/ingest/<route>",
    "/api/openapi.json",
    "/api/uploads",
    "/api/uploads/<customer_id>/<date>.json",
    "/metrics",
}


def test_every_dashboard_route_but_the_allowlist_needs_a_user(tmp_path: Path):
    settings = oidc_settings()
    env = {
        "AUTH_MODE": "oidc",
        "SECRET_KEY": "k" * 40,
        "OIDC_ISSUER": settings.oidc_issuer,
        "OIDC_CLIENT_ID": "client",
        "OIDC_CLIENT_SECRET": "secret",
        "ROLE_MAP": "admins=admin",
        "LAKE_ROOT": str(tmp_path / "lake"),
        "STATE_DB": str(tmp_path / "state.sqlite"),
    }
    server = create_app(env)
    client = server.test_client()
    public = set()
    rules = list(server.url_map.iter_rules())
    assert {"/_dash-update-component", "/export/<view_name>.csv"} <= {r.rule for r in rules}
    for rule in rules:
        method = "GET" if "GET" in rule.methods else sorted(rule.methods - {"OPTIONS"})[0]
        # A JSON body, so a POST reaches the guard rather than the body checks before it.
        body = {} if method == "POST" else None
        response = client.open(sample_path(rule.rule), method=method, headers=HTML, json=body)
        assert response.status_code != 500, rule.rule  # 503 is the provider-down page
        if is_public_rule(rule.rule):
            public.add(rule.rule)
            continue
        asked_to_sign_in = response.status_code == 401 or (
            response.status_code == 302 and response.location.startswith("/login?")
        )
        assert asked_to_sign_in, f"{method} {rule.rule} answered {response.status_code}"
    assert public == EXPECTED_PUBLIC
