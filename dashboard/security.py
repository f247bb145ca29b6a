"""Browser-side security headers, and the cross-site request refusal every route shares.

``init_security(server, app, settings)`` adds to every response:

- ``Content-Security-Policy``: scripts only from this origin plus the SHA-256 hashes of the
  inline scripts this app itself writes (Dash's renderer bootstrap, inline clientside
  callbacks from ``app.csp_hashes()``, and the ``<script>`` blocks of ``app.index_string``),
  so ``script-src`` needs neither ``'unsafe-inline'`` nor ``'unsafe-eval'``. ``style-src``
  keeps ``'unsafe-inline'``: React, Plotly and AG Grid set style attributes and inject
  ``<style>`` elements at run time, which no hash can cover. Nothing is framed, nothing
  framing us is allowed (``frame-ancestors 'none'``), no plugins, no ``<base>`` rewriting.
- ``X-Frame-Options: DENY`` for browsers that predate ``frame-ancestors``.
- ``X-Content-Type-Options: nosniff``; ``Referrer-Policy: same-origin`` (page URLs carry
  customer ids, which must not leak to other sites); ``Cross-Origin-Opener-Policy``.
- ``Strict-Transport-Security`` only on requests that arrived over https (after ProxyFix
  has applied ``X-Forwarded-Proto``): sent over plain http it would be ignored at best and
  would pin a development host to https at worst.

It also refuses state-changing requests (POST, PUT, PATCH, DELETE) that a browser marks as
cross-site, on every route, public ones included (``/logout``), except the API-key routes
under ``settings.api_prefixes``, which never read the session cookie. ``auth.guard`` does
the same check for signed-in routes; this one also covers routes the guard lets through.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import dash
from flask import Flask, Response, jsonify, request

log = logging.getLogger(__name__)

EXTENSION_KEY = "mission_control_security"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# <script> blocks without a src attribute, i.e. inline code the index template carries.
_INLINE_SCRIPT = re.compile(
    r"<script(?P<attributes>[^>]*)>(?P<body>.*?)</script>", re.IGNORECASE | re.DOTALL
)
_DATA_SCRIPT_TYPES = ("application/json", "application/ld+json", "text/template")


@dataclass(frozen=True)
class SecuritySettings:
    # 0 turns HSTS off (e.g. while a new host name is being tried out).
    hsts_seconds: int = 365 * 24 * 3600
    hsts_include_subdomains: bool = True
    referrer_policy: str = "same-origin"
    # Routes authenticated by API key, not by the session cookie: callers from other
    # origins (a shop's web front end posting page views) are legitimate there.
    api_prefixes: tuple[str, ...] = ("/api/",)
    # Where CSP violation reports go, if anywhere (a report collector's URL).
    csp_report_uri: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SecuritySettings:
        env = os.environ if env is None else env
        hsts = int(env.get("HSTS_SECONDS", cls.hsts_seconds))
        if hsts < 0:
            raise ValueError(f"HSTS_SECONDS must be >= 0, not {hsts}")
        return cls(
            hsts_seconds=hsts,
            csp_report_uri=env.get("CSP_REPORT_URI", "").strip(),
        )


def script_hash(body: str) -> str:
    """The CSP source expression that allows exactly this inline script body."""
    digest = hashlib.sha256(body.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def index_script_hashes(index_string: str) -> list[str]:
    """Hashes of the executable inline ``<script>`` blocks of a Dash ``index_string``."""
    hashes = []
    for match in _INLINE_SCRIPT.finditer(index_string):
        attributes = match.group("attributes").lower()
        if "src=" in attributes or any(kind in attributes for kind in _DATA_SCRIPT_TYPES):
            continue
        hashes.append(script_hash(match.group("body")))
    return hashes


def content_security_policy(script_hashes: Iterable[str], report_uri: str = "") -> str:
    """The policy text for these inline-script hashes."""
    directives = {
        "default-src": ["'self'"],
        "script-src": ["'self'", *dict.fromkeys(script_hashes)],
        # Run-time style attributes and <style> elements (React, Plotly, AG Grid).
        "style-src": ["'self'", "'unsafe-inline'"],
        # Bootstrap and AG Grid draw icons from data: URIs; Plotly exports through blob:.
        "img-src": ["'self'", "data:", "blob:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "worker-src": ["'self'", "blob:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
    if report_uri:
        directives["report-uri"] = [report_uri]
    return "; ".join(f"{name} {' '.join(values)}" for name, values in directives.items())


def _dash_script_hashes(app: dash.Dash) -> list[str]:
    return [*app.csp_hashes(), *index_script_hashes(app.index_string)]


def _is_cross_site() -> bool:
    """What the browser says about where this request comes from.

    ``Sec-Fetch-Site: cross-site`` is set by every current browser; the ``Origin`` check
    covers older ones. A request with neither (curl, devices) is not a browser's forgery.
    """
    if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        return True
    origin = request.headers.get("Origin")
    return origin is not None and urlsplit(origin).netloc != request.host


class _SecurityHeaders:
    def __init__(self, app: dash.Dash | None, settings: SecuritySettings) -> None:
        self._app = app
        self._settings = settings
        self._policy: str | None = None
        self._lock = threading.Lock()
        hsts = f"max-age={settings.hsts_seconds}"
        if settings.hsts_include_subdomains:
            hsts += "; includeSubDomains"
        self._hsts = hsts

    def policy(self) -> str:
        # Computed at the first response: every callback, inline clientside ones included,
        # is registered by then.
        if self._policy is None:
            with self._lock:
                if self._policy is None:
                    hashes = _dash_script_hashes(self._app) if self._app is not None else []
                    self._policy = content_security_policy(hashes, self._settings.csp_report_uri)
        return self._policy

    def refuse_cross_site_writes(self) -> Response | None:
        if request.method not in UNSAFE_METHODS:
            return None
        if request.path.startswith(self._settings.api_prefixes):
            return None
        if not _is_cross_site():
            return None
        log.warning(
            "refused cross-site %s %s (Origin %r, Sec-Fetch-Site %r)",
            request.method,
            request.path,
            request.headers.get("Origin"),
            request.headers.get("Sec-Fetch-Site"),
        )
        response = jsonify(error="Cross-site request refused.")
        response.status_code = 403
        return response

    def add_headers(self, response: Response) -> Response:
        headers = response.headers
        headers["Content-Security-Policy"] = self.policy()
        headers["X-Frame-Options"] = "DENY"
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = self._settings.referrer_policy
        headers["Cross-Origin-Opener-Policy"] = "same-origin"
        if request.is_secure and self._settings.hsts_seconds > 0:
            headers["Strict-Transport-Security"] = self._hsts
        return response


def init_security(
    server: Flask, app: dash.Dash | None, settings: SecuritySettings | None = None
) -> None:
    """Add the headers and the cross-site refusal to ``server``; call once, after the pages
    and callbacks are registered on ``app`` (the Dash app whose inline scripts to allow)."""
    if EXTENSION_KEY in server.extensions:
        raise RuntimeError("init_security was already called for this app")
    security = _SecurityHeaders(app, settings or SecuritySettings())
    server.extensions[EXTENSION_KEY] = security
    # First in line: a forged request is refused before any other hook does work for it.
    server.before_request_funcs.setdefault(None, []).insert(0, security.refuse_cross_site_writes)
    server.after_request(security.add_headers)
