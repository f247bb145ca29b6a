"""The signed-in session: cookie settings, rotation at sign-in, idle and absolute expiry."""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

from flask import Flask, request, session
from flask.sessions import SecureCookieSessionInterface

from auth.roles import User
from auth.settings import AuthSettings

log = logging.getLogger(__name__)

SESSION_COOKIE_NAME = "mc_session"
USER_KEY = "mc_user"
NEXT_KEY = "mc_next"
# A session's last-seen time is rewritten at most this often, so polling does not
# re-send the cookie on every request.
SEEN_RESOLUTION_SECONDS = 60


class _SchemeAwareSessionInterface(SecureCookieSessionInterface):
    """Marks the cookie Secure when the request came over https (after ProxyFix)."""

    def __init__(self, always_secure: bool) -> None:
        self.always_secure = always_secure

    def get_cookie_secure(self, app: Flask) -> bool:
        return self.always_secure or request.is_secure or super().get_cookie_secure(app)


def configure_cookie(server: Flask, settings: AuthSettings) -> None:
    server.config.update(
        SESSION_COOKIE_NAME=SESSION_COOKIE_NAME,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.session_max_hours),
        SESSION_REFRESH_EACH_REQUEST=False,
    )
    # In production every request arrives through the TLS-terminating load balancer.
    server.session_interface = _SchemeAwareSessionInterface(always_secure=settings.production)


def safe_next(target: str | None) -> str:
    """``target`` if it is a path on this site, else ``/``: never an open redirect.

    Browsers read ``\\`` as ``/`` and drop tabs and newlines, so ``/\\evil.example`` or
    ``/\\t/evil.example`` would become ``//evil.example``, another host.
    """
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(char) < 0x21 or ord(char) == 0x7F for char in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def requested_path() -> str:
    """The path and query of this request, as a ``next`` value."""
    path = request.full_path
    return path[:-1] if path.endswith("?") else path


def start_session(user: User, *, now: float, id_token: str = "") -> str:
    """Replace whatever session there was with a new one for ``user``; returns its id."""
    # A new session id at sign-in: nothing from the anonymous session survives (fixation).
    session.clear()
    session.permanent = True
    session_id = secrets.token_urlsafe(18)
    session[USER_KEY] = {
        "sid": session_id,
        "sub": user.subject,
        "email": user.email,
        "name": user.name,
        "role": user.role,
        "claims": user.claims,
        "id_token": id_token,
        "signed_in_at": now,
        "seen_at": now,
    }
    return session_id


def session_user(*, now: float, idle_seconds: float, max_seconds: float) -> User | None:
    """The user of a live session; an idle or too-old session is ended here."""
    data = session.get(USER_KEY)
    if not isinstance(data, dict):
        return None
    signed_in_at = float(data.get("signed_in_at", 0))
    seen_at = float(data.get("seen_at", 0))
    if now - signed_in_at > max_seconds or now - seen_at > idle_seconds:
        log.info("session %s for %s expired", data.get("sid"), data.get("email"))
        session.clear()
        return None
    if now - seen_at >= SEEN_RESOLUTION_SECONDS:
        data["seen_at"] = now
        session.modified = True
    return User(
        subject=data.get("sub", ""),
        email=data.get("email", ""),
        name=data.get("name", ""),
        role=data.get("role", ""),
        claims=data.get("claims") or {},
    )


def session_id() -> str | None:
    data = session.get(USER_KEY)
    return data.get("sid") if isinstance(data, dict) else None


def end_session() -> str:
    """Clear the session; returns the ID token it held (for the provider's logout)."""
    data = session.get(USER_KEY)
    id_token = data.get("id_token", "") if isinstance(data, dict) else ""
    session.clear()
    return id_token
