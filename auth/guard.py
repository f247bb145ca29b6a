"""Puts the signed-in user on every request, and refuses requests without one.

Every route needs a signed-in user except ``PUBLIC_RULES`` and the asset routes under
``PUBLIC_ASSET_PREFIXES``:

- ``/healthz`` and ``/readyz``: the load balancer and orchestrator probe them without a user.
- ``/login``, ``/auth/callback``: the way in; ``/signed-out`` and ``/logout``: the way out
  (they only ever end a session, and must work once it has expired).
- ``/api/ingest/...``, ``/api/uploads...``, ``/api/openapi.json`` and ``/metrics``:
  machines with their own credentials (API keys; a metrics token or loopback), never a
  browser session.
- Static assets (``/assets/``, ``/_dash-component-suites/``, ``/static/``,
  ``/_favicon.ico``): the same open-source JavaScript and CSS for everyone, no data. Keeping
  them public lets browsers cache them and saves a session check on each of the ~30
  requests of a page load.

Unauthenticated page loads are redirected to ``/login?next=<this path>``; scripts (Dash's
``/_dash-*`` requests, anything not asking for HTML) get a 401 JSON answer instead.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import secrets
from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol
from urllib.parse import urlsplit

from flask import Flask, Response, g, request, session
from werkzeug.middleware.proxy_fix import ProxyFix

from auth.alb import ALB_DATA_HEADER, AlbKeyUnavailable, AlbTokenRejected, AlbVerifier
from auth.audit import AuditLog, AuditRecords
from auth.context import (
    EXTENSION_KEY,
    AuthState,
    audit,
    audit_as,
    auth_state,
    current_user,
    forbidden_response,
    is_navigation,
    json_error,
    require_role,
    session_store_unavailable,
    unauthenticated_response,
)
from auth.oidc import OidcSignIn
from auth.pages import error_page, refusal_page
from auth.roles import ROLES, User, claim_at_path, rank, user_from_claims
from auth.session import (
    ProcessRecords,
    SessionRecords,
    SessionStore,
    SessionStoreUnavailable,
    configure_cookie,
    requested_path,
    safe_next,
    session_user,
)
from auth.settings import AuthSettings
from auth.views import register_views

__all__ = [
    "PUBLIC_ASSET_PREFIXES",
    "PUBLIC_RULES",
    "audit",
    "current_user",
    "guard_request",
    "init_auth",
    "is_public_rule",
    "protect_dash_outputs",
    "require_role",
]

log = logging.getLogger(__name__)

PUBLIC_RULES = frozenset(
    {
        "/healthz",
        "/readyz",
        "/login",
        "/auth/callback",
        "/logout",
        "/signed-out",
        "/_favicon.ico",
        # Machine endpoints that check their own credentials: API keys for ingest and
        # uploads, METRICS_TOKEN or loopback for the Prometheus scrape.
        "/api/ingest/<route>",
        "/api/openapi.json",
        "/api/uploads",
        "/api/uploads/<customer_id>/<date>.json",
        "/metrics",
    }
)
PUBLIC_ASSET_PREFIXES = ("/assets/", "/_dash-component-suites/", "/static/")
DASH_CALLBACK_SUFFIX = "/_dash-update-component"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ALB_SIGNED_IN_KEY = "mc_alb_sub"
ALB_REFUSED_KEY = "mc_alb_refused"
# Public routes that still want to know who is asking: sign-in skips a signed-in user,
# sign-out ends the session.
SESSION_AWARE_PUBLIC_RULES = frozenset({"/login", "/logout"})
# Dash inputs that change by themselves: the interval that drives the panel poll, and a
# panel's tick, which the page's poll sets when that panel's data version changed.
POLL_PROP_SUFFIXES = (".n_intervals", '"type":"mc-tick"}.data')
# The page's one request per tick: which panels' data versions changed (never activity).
PANEL_POLL_PATH = "/poll"


class AuthRecords(AuditRecords, SessionRecords, Protocol):
    """The record store's methods auth uses: the audit log's and the sessions'."""


def is_public_rule(rule: str) -> bool:
    """Whether a URL rule (its template, as in ``server.url_map``) is reachable without a user."""
    return rule in PUBLIC_RULES or rule.startswith(PUBLIC_ASSET_PREFIXES)


def _is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def init_auth(
    server: Flask,
    settings: AuthSettings,
    records: AuthRecords | None = None,
    *,
    register_guard: bool = True,
) -> None:
    """Wire sign-in, sessions, the route guard and the audit log into ``server``.

    ``records`` is the backend's record store (``Stores.records``); without one, audit
    entries reach the log only and sessions live in this process, which production refuses.
    With ``register_guard=False`` the caller registers ``guard_request`` itself, where its
    own order of request hooks says (``dashboard.app.create_app`` does).
    """
    problems = settings.problems()
    if settings.production and records is None:
        problems.append("APP_ENV=production needs a record store for the audit log")
    if problems:
        raise RuntimeError("auth settings refused: " + "; ".join(problems))
    if EXTENSION_KEY in server.extensions:
        raise RuntimeError("init_auth was already called for this app")
    if settings.secret_key:
        server.config["SECRET_KEY"] = settings.secret_key
    elif not server.config.get("SECRET_KEY"):
        # Outside production only (problems() refuses it there): sessions last one process.
        log.warning("SECRET_KEY is not set: using a random key, sessions end at restart")
        server.config["SECRET_KEY"] = secrets.token_hex(32)
    if settings.proxy_fix.enabled:
        counts = settings.proxy_fix
        server.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            server.wsgi_app,
            x_for=counts.x_for,
            x_proto=counts.x_proto,
            x_host=counts.x_host,
            x_port=counts.x_port,
            x_prefix=counts.x_prefix,
        )
    configure_cookie(server, settings)
    state = AuthState(settings=settings, audit_log=AuditLog(records))
    if settings.mode == "oidc":
        state.oidc = OidcSignIn(server, settings)
        state.sessions = SessionStore(
            records if records is not None else ProcessRecords(lambda: state.clock()),
            idle_seconds=state.idle_seconds,
            max_seconds=state.max_seconds,
            recheck_seconds=settings.session_recheck_seconds,
            kiosk_users=settings.session_kiosk_users,
            clock=lambda: state.clock(),  # read late: tests replace state.clock
        )
    elif settings.mode == "alb":
        state.alb = AlbVerifier(
            key_url_template=settings.alb_key_url,
            expected_signer=settings.alb_expected_signer,
            leeway_seconds=settings.oidc_leeway_seconds,
            expected_issuer=settings.oidc_issuer,
            expected_client=settings.oidc_client_id,
            timeout_seconds=settings.oidc_timeout_seconds,
            max_concurrent_fetches=settings.oidc_max_concurrent_calls,
        )
    else:
        state.dev_user = User(
            subject="dev", email=settings.dev_user, name="Local developer", role=settings.dev_role
        )
    server.extensions[EXTENSION_KEY] = state
    register_views(server)
    if register_guard:
        server.before_request(guard_request)


def protect_dash_outputs(server: Flask, rules: Mapping[str, str]) -> None:
    """Refuse Dash callbacks that write to protected components, by component-id prefix.

    ``rules`` maps a prefix (``"customer-"``) to the minimum role (``"operator"``). A
    ``/_dash-update-component`` request whose outputs touch such a component, from a user
    below that role, gets a 403 JSON answer and an audit entry ``refused``.
    """
    for prefix, role in rules.items():
        if not prefix or role not in ROLES:
            raise ValueError(f"rule {prefix!r} -> {role!r}: need a prefix and one of {ROLES}")
    auth_state(server).dash_rules.update(rules)


def guard_request() -> Response | None:
    """The ``before_request`` hook: sets ``g.user``, or refuses the request."""
    state = auth_state()
    g.user = None
    rule = request.url_rule.rule if request.url_rule is not None else None
    public = rule is not None and is_public_rule(rule)
    if state.settings.mode == "dev":
        if public:
            return None
        # Dev mode has no sign-in at all, so it answers only on loopback.
        if not _is_loopback(request.remote_addr):
            log.warning("dev auth refused non-loopback client %s", request.remote_addr)
            return json_error(403, "AUTH_MODE=dev answers only on loopback")
        # Then the same role checks as a signed-in user: DEV_ROLE=viewer sees what viewers see.
        g.user = state.dev_user
    elif state.alb is not None:
        if public and rule != "/logout":
            # Only sign-out needs to know who is leaving; probes and assets skip the check.
            return None
        refusal = _identify_from_alb(state)
        if refusal is not None and not public:
            return refusal
    elif state.sessions is not None and (not public or rule in SESSION_AWARE_PUBLIC_RULES):
        try:
            g.user = session_user(state.sessions, active=not is_background_poll())
        except SessionStoreUnavailable as exc:
            log.error("refused %s %s: %s", request.method, request.path, exc)
            # Sign-in and sign-out answer for themselves (they need the store as well).
            g.session_store_down = True
            if not public:
                return session_store_unavailable()
    if public:
        return None
    user = current_user()
    if user is None:
        return unauthenticated_response()
    if request.method not in SAFE_METHODS and not _same_origin():
        log.warning("refused cross-site %s %s from %s", request.method, request.path, user.label)
        return json_error(403, "Cross-site request refused.")
    if request.method == "POST" and request.path.endswith(DASH_CALLBACK_SUFFIX):
        return _check_dash_outputs(state, user)
    return None


def is_background_poll() -> bool:
    """A request the page makes by itself, which does not count as the user's activity.

    Navigations and other POSTs (forms) are the user's. The panel poll (``PANEL_POLL_PATH``)
    is the page's. Of Dash callbacks, those fired by the interval or by a panel's tick (every
    changed prop an ``n_intervals`` or a ``mc-tick``) and those fired on page load (no
    changed prop; the navigation itself counted) are the page's. Anything else a script
    asks for (layout, JSON endpoints) follows a navigation or a callback, so is not counted.
    """
    if request.method == "POST" and request.path == PANEL_POLL_PATH:
        return True
    if request.method == "POST" and request.path.endswith(DASH_CALLBACK_SUFFIX):
        body = request.get_json(silent=True)
        changed = body.get("changedPropIds") if isinstance(body, dict) else None
        if not isinstance(changed, list) or not changed:
            return True
        return all(isinstance(prop, str) and prop.endswith(POLL_PROP_SUFFIXES) for prop in changed)
    if request.method not in SAFE_METHODS:
        return False
    return not is_navigation()


def _same_origin() -> bool:
    """No Origin header (same-origin GETs, non-browser clients) or one naming this host.

    SameSite=Lax already keeps the cookie off cross-site POSTs; this is the second lock.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.host


def _identify_from_alb(state: AuthState) -> Response | None:
    """Sets ``g.user`` from the load balancer's header; a response when it cannot."""
    assert state.alb is not None
    token = request.headers.get(ALB_DATA_HEADER)
    if not token:
        return unauthenticated_response()
    # The path goes back into a link: the same check as any ``next`` (no off-site target).
    retry_url = safe_next(requested_path())
    try:
        claims = state.alb.verify(token)
    except AlbKeyUnavailable as exc:
        log.error("ALB public key unavailable: %s", exc)
        message = "Sign-in cannot be checked right now. Please try again in a moment."
        if is_navigation():
            return error_page("Sign-in unavailable", message, status=503, retry_url=retry_url)
        return json_error(503, message)
    except AlbTokenRejected as exc:
        log.warning("ALB identity header rejected from %s: %s", request.remote_addr, exc)
        message = "The identity forwarded by the load balancer is not valid."
        if is_navigation():
            return error_page("Not signed in", message, status=401, retry_url=retry_url)
        return json_error(401, message)
    settings = state.settings
    person = user_from_claims(claims, settings)
    if not person.role:
        claim_value = claim_at_path(claims, settings.oidc_roles_claim)
        if session.get(ALB_REFUSED_KEY) != person.subject:
            # Audited once per browser session, not on every poll.
            session[ALB_REFUSED_KEY] = person.subject
            log.warning("ALB user %s refused: claim %r maps to no role", person.label, claim_value)
            audit_as(person, "refused", reason="no mapped role", value=claim_value)
        if is_navigation():
            return refusal_page(
                claim_path=settings.oidc_roles_claim,
                claim_value=claim_value,
                claims=claims,
                retry_url=retry_url,
            )
        return json_error(403, "Your account has no Mission Control role.")
    g.user = person
    if session.get(ALB_SIGNED_IN_KEY) != person.subject:
        session.clear()
        session[ALB_SIGNED_IN_KEY] = person.subject
        audit_as(person, "sign-in", method="alb")
    return None


def _check_dash_outputs(state: AuthState, user: User) -> Response | None:
    if not state.dash_rules:
        return None
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return json_error(400, "A Dash callback request must be a JSON object.")
    component_ids = list(dash_output_ids(body))
    strictest = role_needed_for(component_ids)
    if strictest is None or user.can(strictest):
        return None
    return forbidden_response(user, strictest, f"dash outputs {sorted(set(component_ids))}")


def role_needed_for(component_ids: Iterable[str]) -> str | None:
    """The strictest role ``protect_dash_outputs`` asks of any of ``component_ids``, or None.

    The panel poll (``dashboard.components.poll_api``) asks it of each panel id, so a panel
    the user may not refresh never reveals its data version either.
    """
    ids = list(component_ids)
    needed = [
        role
        for prefix, role in auth_state().dash_rules.items()
        if any(component_id.startswith(prefix) for component_id in ids)
    ]
    return max(needed, key=rank) if needed else None


def dash_output_ids(body: Mapping[str, object]) -> Iterator[str]:
    """Every component id a Dash callback request writes to, as strings to match prefixes.

    Both ``output`` (which Dash uses to pick the callback) and ``outputs`` are read, so a
    request cannot name a harmless output in one and a protected one in the other.
    Pattern-matching ids (dicts) yield each of their string values.
    """
    output = body.get("output")
    if isinstance(output, str):
        for part in _output_string_parts(output):
            yield from _id_strings(part)
    yield from _ids_in_outputs(body.get("outputs"))


def _output_string_parts(output: str) -> Iterator[object]:
    # "id.prop" for one output, "..id1.prop1...id2.prop2.." for several.
    text = output[2:-2] if output.startswith("..") and output.endswith("..") else output
    for part in text.split("..."):
        component, dot, _prop = part.rpartition(".")
        component = component if dot else part
        if component.startswith("{"):
            try:
                yield json.loads(component)
                continue
            except ValueError:
                pass
        yield component


def _ids_in_outputs(outputs: object) -> Iterator[str]:
    if isinstance(outputs, Mapping):
        if "id" in outputs:
            yield from _id_strings(outputs["id"])
        return
    if isinstance(outputs, list):
        for item in outputs:
            yield from _ids_in_outputs(item)


def _id_strings(component_id: object) -> Iterator[str]:
    if isinstance(component_id, str):
        yield component_id
    elif isinstance(component_id, Mapping):
        for value in component_id.values():
            if isinstance(value, str):
                yield value
