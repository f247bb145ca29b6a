"""Browser-side security headers, and the cross-site request refusal every route shares.

``init_security(server, app, settings)`` returns the hooks that add ``X-Content-Type-Options:
nosniff`` to every response and, to responses a browser may render as a document (HTML,
SVG, XML: ``DOCUMENT_TYPES``), the document headers below. A JSON answer, a script or an
empty 204 (the panel poll's unchanged tick) is never a document, so it skips them:

- ``Content-Security-Policy``: scripts only from this origin plus the SHA-256 hashes of the
  inline scripts this app itself writes (Dash's renderer bootstrap, inline clientside
  callbacks from ``app.csp_hashes()``, and the ``<script>`` blocks of ``app.index_string``),
  so ``script-src`` needs neither ``'unsafe-inline'`` nor ``'unsafe-eval'``. ``style-src``
  keeps ``'unsafe-inline'``: React, Plotly and AG Grid set style attributes and inject
  ``<style>`` elements at run time, which no hash can cover. Nothing is framed, nothing
  framing us is allowed (``frame-ancestors 'none'``), no plugins, no ``<base>`` rewriting.
- ``X-Frame-Options: DENY`` for browsers that predate ``frame-ancestors``.
- ``Referrer-Policy: same-origin`` (page URLs carry customer ids, which must not leak to
  other sites); ``Cross-Origin-Opener-Policy``.

``Strict-Transport-Security`` goes on every response, documents or not, but only on requests
that arrived over https (after ProxyFix has applied ``X-Forwarded-Proto``): sent over plain
http it would be ignored at best and would pin a development host to https at worst.

It also refuses state-changing requests (POST, PUT, PATCH, DELETE) that a browser marks as
cross-site, on every route, public ones included (``/logout``), except the API-key routes
under ``settings.api_prefixes``, which never read the session cookie. ``auth.guard`` does
the same check for signed-in routes; this one also covers routes the guard lets through.

And it answers a malformed Dash callback request (``POST /_dash-update-component``) with 400
(413 when too large, 415 when not JSON) instead of letting it reach Dash, which answers 500
to anything it cannot map (an unknown output, inputs that do not match the callback).
``create_app`` runs the check right behind the auth guard, so an anonymous caller still gets
the guard's 401 and learns nothing about the callbacks, and ahead of every later hook that
reads the body. JSON
nested past Python's recursion limit, which Flask's parser would let out as a 500 wherever a
body is read (the guard reads callback bodies too), is a parse error (400) app-wide.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Annotated
from urllib.parse import urlsplit

import dash
from flask import Flask, Response, jsonify, request
from flask.json.provider import JSONProvider
from pydantic import StringConstraints

from configuration.base import EnvSettings, setting
from dashboard.request_hooks import RequestHooks

log = logging.getLogger(__name__)

EXTENSION_KEY = "mission_control_security"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CALLBACK_SUFFIX = "/_dash-update-component"
# Content types a browser renders as a document, which the document headers protect.
DOCUMENT_TYPES = frozenset(
    {"text/html", "application/xhtml+xml", "image/svg+xml", "text/xml", "application/xml"}
)
# The renderer's requests carry ids, small values and grid filter models: a few KB. The
# limits leave a wide margin and still bound what a hostile body can cost.
MAX_CALLBACK_BYTES = 2 * 2**20
MAX_CALLBACK_DEPTH = 64
MAX_WILDCARD_ITEMS = 10_000
_WILDCARDS = (["ALL"], ["ALLSMALLER"], ["MATCH"])
# <script> blocks without a src attribute, i.e. inline code the index template carries.
_INLINE_SCRIPT = re.compile(
    r"<script(?P<attributes>[^>]*)>(?P<body>.*?)</script>", re.IGNORECASE | re.DOTALL
)
_DATA_SCRIPT_TYPES = ("application/json", "application/ld+json", "text/template")


class SecuritySettings(EnvSettings):
    hsts_seconds: int = setting(
        365 * 24 * 3600,
        "HSTS_SECONDS",
        description="`Strict-Transport-Security` max-age, sent only on https requests (0 turns "
        "it off, e.g. while a new host name is being tried out)",
        ge=0,
    )
    hsts_include_subdomains: bool = True
    referrer_policy: str = "same-origin"
    # Routes authenticated by API key, not by the session cookie: callers from other
    # origins (a shop's web front end posting page views) are legitimate there.
    api_prefixes: tuple[str, ...] = ("/api/",)
    csp_report_uri: Annotated[str, StringConstraints(strip_whitespace=True)] = setting(
        "",
        "CSP_REPORT_URI",
        description="where browsers report Content-Security-Policy violations (a report "
        "collector's URL)",
        shown_default="none",
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


def json_depth(value: object) -> int:
    """How deeply lists and objects nest in a parsed JSON value (a scalar is 0)."""
    deepest = 0
    pending: list[tuple[object, int]] = [(value, 0)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, dict):
            children = list(node.values())
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth + 1)
        pending.extend((child, depth + 1) for child in children)
    return deepest


def _spec_id(raw: object) -> object:
    # Dash keeps pattern-matching ids as JSON text in its callback map.
    if isinstance(raw, str) and raw.startswith("{"):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _id_matches(sent: object, spec: object) -> bool:
    """A concrete id against a registered one, whose dict values may be wildcards."""
    if not isinstance(spec, dict):
        return sent == spec
    if not isinstance(sent, dict) or set(sent) != set(spec):
        return False
    for key, expected in spec.items():
        value = sent[key]
        if isinstance(value, dict | list):  # id values are scalars
            return False
        if expected not in _WILDCARDS and value != expected:
            return False
    return True


def _item_problem(sent: object, spec: Mapping[str, object], where: str) -> str | None:
    spec_id = _spec_id(spec.get("id"))
    many = isinstance(spec_id, dict) and any(
        value in (["ALL"], ["ALLSMALLER"]) for value in spec_id.values()
    )
    items = sent if many else [sent]
    if not isinstance(items, list) or len(items) > MAX_WILDCARD_ITEMS:
        return f"{where} must be a list of component entries"
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("property"), str):
            return f"{where} must name an id and a property"
        if item["property"] != spec.get("property") or not _id_matches(item.get("id"), spec_id):
            return f"{where} does not match the callback"
    return None


def callback_request_problem(
    body: object, callback_map: Mapping[str, Mapping[str, object]]
) -> str | None:
    """Why ``body`` is not a request the named callback could run, or None if it is."""
    if not isinstance(body, dict):
        return "a callback request must be a JSON object"
    output = body.get("output")
    spec = callback_map.get(output) if isinstance(output, str) else None
    if spec is None or "callback" not in spec:
        return "unknown callback output"
    outputs = body.get("outputs")
    leaves = outputs if isinstance(outputs, list) else [outputs]
    expected = len(output.split("...")) if output.startswith("..") else 1
    if spec.get("no_output"):
        expected = len(leaves)
    if len(leaves) != expected:
        return "outputs do not match the callback"
    for leaf in leaves:
        entries = leaf if isinstance(leaf, list) else [leaf]
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("property"), str):
                return "outputs must name an id and a property"
            if not isinstance(entry.get("id"), str | dict):
                return "outputs must name an id and a property"
    for part in ("inputs", "state"):
        sent = body.get(part, [])
        declared = spec.get(part) or []
        if not isinstance(sent, list) or not isinstance(declared, list):
            return f"{part} must be a list"
        if len(sent) != len(declared):
            return f"{part} do not match the callback"
        for index, (item, item_spec) in enumerate(zip(sent, declared, strict=True)):
            problem = _item_problem(item, item_spec, f"{part}[{index}]")
            if problem:
                return problem
    changed = body.get("changedPropIds", [])
    if not isinstance(changed, list) or not all(isinstance(item, str) for item in changed):
        return "changedPropIds must be a list of strings"
    return None


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


def log_callback_error(error: Exception) -> None:
    """Dash's ``on_error`` for every server callback: log it, change nothing on screen.

    A callback that raises (a hostile value no control would send, or a bug) then answers
    "no update" (204) instead of a 500, as the panels' own guard already does for panels.
    The traceback goes to the log at ERROR level, where monitoring picks it up.
    """
    body = request.get_json(silent=True) if request.is_json else None
    output = body.get("output") if isinstance(body, dict) else None
    log.error("callback for %s failed: %s", output, error, exc_info=error)


def _json_error(status: int, message: str) -> Response:
    response = jsonify(error=message, status=status)
    response.status_code = status
    return response


class SecurityHooks:
    """The security headers (after every request) and the two refusals (before)."""

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
        return _json_error(403, "Cross-site request refused.")

    def refuse_malformed_callbacks(self) -> Response | None:
        """A callback body must be JSON of bounded size and depth, shaped like the request
        the renderer sends for the callback it names."""
        if request.method != "POST" or not request.path.endswith(CALLBACK_SUFFIX):
            return None
        if (request.content_length or 0) > MAX_CALLBACK_BYTES:
            return _json_error(413, "Callback request too large.")
        if not request.is_json:
            return _json_error(415, "A Dash callback request must be application/json.")
        if len(request.get_data(cache=True)) > MAX_CALLBACK_BYTES:
            return _json_error(413, "Callback request too large.")
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _json_error(400, "A Dash callback request must be a JSON object.")
        if json_depth(body) > MAX_CALLBACK_DEPTH:
            return _json_error(400, "Callback request nested too deeply.")
        if self._app is None:
            return None
        problem = callback_request_problem(body, self._app.callback_map)
        if problem is None:
            return None
        log.info("refused a malformed callback request: %s", problem)
        return _json_error(400, f"Malformed callback request: {problem}.")

    def hooks(self) -> RequestHooks:
        return RequestHooks(
            before=(self.refuse_cross_site_writes, self.refuse_malformed_callbacks),
            after=(self.add_headers,),
        )

    def add_headers(self, response: Response) -> Response:
        headers = response.headers
        headers["X-Content-Type-Options"] = "nosniff"
        if request.is_secure and self._settings.hsts_seconds > 0:
            headers["Strict-Transport-Security"] = self._hsts  # any answer pins the host
        if response.mimetype not in DOCUMENT_TYPES:
            return response
        headers["Content-Security-Policy"] = self.policy()
        headers["X-Frame-Options"] = "DENY"
        headers["Referrer-Policy"] = self._settings.referrer_policy
        headers["Cross-Origin-Opener-Policy"] = "same-origin"
        return response


def init_security(
    server: Flask, app: dash.Dash | None, settings: SecuritySettings | None = None
) -> SecurityHooks:
    """Make ``server``'s JSON parsing depth-safe and return the headers and refusals as hooks
    for ``register_hooks``; call once, after the pages and callbacks are registered on
    ``app`` (the Dash app whose inline scripts to allow)."""
    if EXTENSION_KEY in server.extensions:
        raise RuntimeError("init_security was already called for this app")
    security = SecurityHooks(app, settings or SecuritySettings())
    server.extensions[EXTENSION_KEY] = security
    server.json = _DepthSafeJson(server, server.json)
    return security


class _DepthSafeJson(JSONProvider):
    """The app's JSON provider, with nesting too deep to parse reported as bad JSON.

    Python's parser raises RecursionError, not ValueError, past ~1000 levels: Flask would
    answer 500 (or let ``get_json(silent=True)`` raise) instead of treating it as malformed.
    """

    def __init__(self, app: Flask, inner: JSONProvider) -> None:
        super().__init__(app)
        self._inner = inner

    def dumps(self, obj: object, **kwargs: object) -> str:
        return self._inner.dumps(obj, **kwargs)

    def loads(self, s: str | bytes, **kwargs: object) -> object:
        try:
            return self._inner.loads(s, **kwargs)
        except RecursionError as exc:
            raise ValueError("JSON nested too deeply") from exc

    def response(self, *args: object, **kwargs: object) -> Response:
        return self._inner.response(*args, **kwargs)
