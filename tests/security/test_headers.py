"""Security headers on every route the app has, and a CSP whose script hashes are exactly
the inline scripts the pages carry."""

from __future__ import annotations

import re

import pytest
from flask import Flask

from dashboard.security import (
    DOCUMENT_TYPES,
    SecuritySettings,
    content_security_policy,
    index_script_hashes,
    init_security,
    script_hash,
)

INLINE_SCRIPT = re.compile(r"<script(?P<attributes>[^>]*)>(?P<body>.*?)</script>", re.DOTALL)
SAMPLE_ARGUMENTS = {"view_name": "fleet-daily", "filename": "mission-control.css", "path": "x"}


def _directives(policy: str) -> dict[str, list[str]]:
    return {
        name: values
        for name, *values in (part.split() for part in policy.split(";") if part.strip())
    }


def _every_get_url(server: Flask) -> list[str]:
    """One URL per GET rule in the app, with sample values for its arguments."""
    urls = set()
    for rule in server.url_map.iter_rules():
        if "GET" not in (rule.methods or ()):
            continue
        arguments = {name: SAMPLE_ARGUMENTS.get(name, "x") for name in rule.arguments}
        path = rule.rule
        for name, value in arguments.items():
            path = re.sub(rf"<(?:[^:<>]+:)?{name}>", value, path)
        urls.add(path)
    return sorted(urls)


DOCUMENT_HEADERS = (
    "Content-Security-Policy",
    "X-Frame-Options",
    "Referrer-Policy",
    "Cross-Origin-Opener-Policy",
)


def _assert_headers(response, url: str, *, https: bool = False) -> None:
    """nosniff (and HSTS over https) on every answer; the document headers on documents only."""
    headers = response.headers
    assert headers["X-Content-Type-Options"] == "nosniff", url
    assert ("Strict-Transport-Security" in headers) is https, url
    if response.mimetype not in DOCUMENT_TYPES:
        assert not [name for name in DOCUMENT_HEADERS if name in headers], url
        return
    assert headers["X-Frame-Options"] == "DENY", url
    assert headers["Referrer-Policy"] == "same-origin", url
    policy = _directives(headers["Content-Security-Policy"])
    assert policy["frame-ancestors"] == ["'none'"], url


def test_every_route_answers_with_the_headers(dev_app: Flask) -> None:
    client = dev_app.test_client()
    urls = _every_get_url(dev_app)
    assert "/healthz" in urls and "/" in urls and len(urls) >= 10, urls
    statuses, types = set(), set()
    for url in [*urls, "/no-such-page", "/assets/no-such-file.js", "/export/nope.csv"]:
        response = client.get(url)
        statuses.add(response.status_code)
        types.add(response.mimetype)
        _assert_headers(response, url)
    # Error answers carry them too: the set above covered more than success.
    assert statuses & {400, 404} and 200 in statuses, statuses
    # Both kinds were checked: pages (documents) and JSON, scripts or styles (not documents).
    assert "text/html" in types and types - DOCUMENT_TYPES, types


def test_refusals_and_redirects_carry_the_headers(oidc_app: Flask) -> None:
    client = oidc_app.test_client()
    page = client.get("/revenue", headers={"Accept": "text/html"})
    assert page.status_code in (302, 303)
    _assert_headers(page, "/revenue (redirect to sign-in)")
    script = client.post("/_dash-update-component", json={"output": "x"})
    assert script.status_code == 401
    _assert_headers(script, "/_dash-update-component (401)")


def test_hsts_only_over_https(make_app) -> None:
    plain = make_app().test_client()
    _assert_headers(plain.get("/healthz"), "http")
    # A request that reached the app over https (TLS ends at the app, or ProxyFix said so).
    secure = plain.get("/healthz", base_url="https://localhost")
    _assert_headers(secure, "https", https=True)
    assert "max-age=31536000" in secure.headers["Strict-Transport-Security"]

    behind_proxy = make_app(PROXY_FIX_X_PROTO="1").test_client()
    forwarded = behind_proxy.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    _assert_headers(forwarded, "X-Forwarded-Proto https behind ProxyFix", https=True)
    # Without ProxyFix the header is anyone's to send, and must not switch HSTS on.
    spoofed = plain.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    _assert_headers(spoofed, "X-Forwarded-Proto https without ProxyFix")


@pytest.mark.parametrize("path", ["/", "/screen-time", "/revenue", "/health", "/lake"])
def test_script_src_allows_exactly_the_inline_scripts_of_the_page(
    dev_app: Flask, path: str
) -> None:
    response = dev_app.test_client().get(path)
    assert response.status_code == 200
    policy = _directives(response.headers["Content-Security-Policy"])
    script_src = policy["script-src"]
    assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src
    assert policy["object-src"] == ["'none'"] and policy["base-uri"] == ["'self'"]
    inline = [
        match.group("body")
        for match in INLINE_SCRIPT.finditer(response.get_data(as_text=True))
        if "src=" not in match.group("attributes")
        and "application/json" not in match.group("attributes")
    ]
    assert len(inline) >= 2, "the theme boot script and Dash's renderer at least"
    allowed = {value for value in script_src if value.startswith("'sha256-")}
    assert {script_hash(body) for body in inline} <= allowed


def test_index_script_hashes_skip_external_and_data_scripts() -> None:
    template = (
        "<script>var a = 1;</script>"
        '<script src="/x.js"></script>'
        '<script id="c" type="application/json">{"a": 1}</script>'
        "<SCRIPT type='text/javascript'>\nb()\n</SCRIPT>"
    )
    assert index_script_hashes(template) == [script_hash("var a = 1;"), script_hash("\nb()\n")]
    # The known vector from the CSP specification's examples.
    assert script_hash("alert('Hello, world.');") == (
        "'sha256-qznLcsROx4GACP2dm0UCKCzCG+HiZ1guq6ZZDob/Tng='"
    )


def test_policy_text_and_settings() -> None:
    policy = content_security_policy(["'sha256-abc'", "'sha256-abc'"], report_uri="/csp")
    directives = _directives(policy)
    assert directives["script-src"] == ["'self'", "'sha256-abc'"]
    assert directives["report-uri"] == ["/csp"]
    assert SecuritySettings.from_env({"HSTS_SECONDS": "0"}).hsts_seconds == 0
    with pytest.raises(ValueError, match="HSTS_SECONDS"):
        SecuritySettings.from_env({"HSTS_SECONDS": "-1"})


def test_init_security_twice_is_refused(dev_app: Flask) -> None:
    with pytest.raises(RuntimeError, match="already"):
        init_security(dev_app, None)


def test_hsts_can_be_switched_off(make_app) -> None:
    client = make_app(HSTS_SECONDS="0").test_client()
    response = client.get("/healthz", base_url="https://localhost")
    assert "Strict-Transport-Security" not in response.headers
