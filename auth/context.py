"""Per-app auth state and the helpers views use: current user, role checks, audit."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, TypeVar

from flask import (
    Flask,
    Response,
    current_app,
    g,
    has_app_context,
    has_request_context,
    jsonify,
    redirect,
    request,
    url_for,
)

from auth.alb import AlbVerifier
from auth.audit import AuditLog
from auth.oidc import OidcSignIn
from auth.pages import RETRY_AFTER_SECONDS, error_page
from auth.roles import ROLES, User
from auth.session import SessionStore, requested_path, safe_next
from auth.settings import AuthSettings

EXTENSION_KEY = "mission_control.auth"
View = TypeVar("View", bound=Callable[..., Any])


@dataclass
class AuthState:
    settings: AuthSettings
    audit_log: AuditLog
    oidc: OidcSignIn | None = None
    alb: AlbVerifier | None = None
    dev_user: User | None = None
    sessions: SessionStore | None = None  # AUTH_MODE=oidc: server-side sessions
    # Dash component-id prefix -> minimum role for callbacks that write to it.
    dash_rules: dict[str, str] = field(default_factory=dict)
    clock: Callable[[], float] = time.time

    @property
    def idle_seconds(self) -> float:
        return self.settings.session_idle_minutes * 60.0

    @property
    def max_seconds(self) -> float:
        return self.settings.session_max_hours * 3600.0


def auth_state(server: Flask | None = None) -> AuthState:
    app = server if server is not None else current_app
    try:
        return app.extensions[EXTENSION_KEY]
    except KeyError:
        raise RuntimeError("init_auth(server, settings, records) has not been called") from None


def current_user() -> User | None:
    """The signed-in user of this request, or None (also outside a request)."""
    return g.get("user") if has_app_context() else None


def client_ip() -> str | None:
    return request.remote_addr if has_request_context() else None


def audit(event: str, **details: object) -> dict:
    """Append an audit entry for the current user: who, when, event, details.

    Call it for exports (``view``, ``filters``, ``rows``), alert acknowledgements and
    anything else an administrator may need to trace later.
    """
    return audit_as(current_user(), event, **details)


def audit_as(user: User | None, event: str, **details: object) -> dict:
    if has_request_context():
        details.setdefault("path", request.path)
    return auth_state().audit_log.record(event, user, dict(details), client_ip=client_ip())


def is_navigation() -> bool:
    """A browser loading a page (redirects help), rather than a script (status codes help)."""
    if request.method not in ("GET", "HEAD") or "/_dash-" in request.path:
        return False
    fetch_mode = request.headers.get("Sec-Fetch-Mode")
    if fetch_mode:
        return fetch_mode == "navigate"
    return "text/html" in request.headers.get("Accept", "")


def json_error(status: int, message: str, **extra: object) -> Response:
    response = jsonify(error=message, status=status, **extra)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    if status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def login_url(next_path: str) -> str:
    return url_for("auth.login", next=safe_next(next_path))


def unauthenticated_response() -> Response:
    settings = auth_state().settings
    if settings.mode == "alb":
        # Only the load balancer can sign anyone in; a request without its header did
        # not come through it.
        message = "This request carries no identity from the load balancer."
        if is_navigation():
            return error_page("Not signed in", message, status=401)
        return json_error(401, message)
    target = login_url(requested_path())
    if is_navigation():
        return redirect(target)
    return json_error(401, "Sign-in required.", login=target)


def session_store_unavailable() -> Response:
    """The session store cannot be asked: a 503 (with Retry-After), never a guess."""
    message = "Your session cannot be checked right now. Please try again in a moment."
    if is_navigation():
        return error_page(
            "Sessions unavailable", message, status=503, retry_url=safe_next(requested_path())
        )
    return json_error(503, message)


def forbidden_response(user: User, needed: str, what: str) -> Response:
    audit_as(user, "refused", needed=needed, what=what)
    message = f"This needs the {needed} role; you are signed in as {user.role}."
    if is_navigation():
        return error_page("Not allowed", message, status=403)
    return json_error(403, message, needed=needed)


def require_role(role: str) -> Callable[[View], View]:
    """Decorate a Flask view so only users with ``role`` (or a higher one) reach it."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles are {ROLES}")

    def decorate(view: View) -> View:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            user = current_user()
            if user is None:
                return unauthenticated_response()
            if not user.can(role):
                return forbidden_response(user, role, request.path)
            return view(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorate
