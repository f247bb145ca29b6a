"""The signed-in session: kept on the server, named by an opaque id in the cookie.

After sign-in the cookie (Flask's signed cookie) holds only a random session id. The session
itself (user, role, claims, ID token, sign-in and last-seen times, browser) is a record of
kind ``session`` in the backend's record store, shared by every worker and instance, under
the SHA-256 of the id: the store never holds a usable id. Ending a session deletes its
record, so a copy of the cookie is refused from then on.

A session ends ``SESSION_IDLE_MINUTES`` after its last activity and ``SESSION_MAX_HOURS``
after sign-in, whatever happens; its record expires then too (DynamoDB deletes it by TTL).
Background polls are not activity unless the user is listed in ``SESSION_KIOSK_USERS``.
Each worker keeps the sessions it looked up for ``SESSION_RECHECK_SECONDS``: a session
ended elsewhere is refused by the other workers within that time (at once on the worker
that ended it).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

from cachetools import TTLCache
from flask import Flask, request, session
from flask.sessions import SecureCookieSessionInterface

from auth.roles import User
from auth.settings import AuthSettings

log = logging.getLogger(__name__)
Result = TypeVar("Result")

SESSION_COOKIE_NAME = "mc_session"
SID_KEY = "mc_sid"  # the cookie's one entry once signed in
NEXT_KEY = "mc_next"
SESSION_KIND = "session"
# A session's last-seen time is rewritten at most this often: one store write a minute.
SEEN_RESOLUTION_SECONDS = 60
# Sessions a worker keeps looked up at once; beyond that the oldest are looked up again.
CACHED_SESSIONS = 10_000
# An administrator's list, and a user's "sign out everywhere", read at most this many.
MAX_LISTED_SESSIONS = 5_000


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


class SessionRecords(Protocol):
    """The part of ``data_access.stores.RecordStore`` the session store uses."""

    def put(self, kind: str, key: str, doc: dict, *, expires_at: float | None = None) -> None: ...

    def replace(
        self, kind: str, key: str, doc: dict, *, expires_at: float | None = None
    ) -> bool: ...

    def get(self, kind: str, key: str) -> dict | None: ...

    def delete(self, kind: str, key: str) -> None: ...

    def scan(
        self, kind: str, *, prefix: str = "", limit: int = 1000, newest_first: bool = False
    ) -> list[tuple[str, dict]]: ...


class SessionStoreUnavailable(RuntimeError):
    """The session store could not be read or written; nobody can be let in."""


class ProcessRecords:
    """Session records in this process's memory, for running without a record store
    (outside production only): sessions end at restart and are not shared by workers."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._docs: dict[tuple[str, str], tuple[dict, float | None]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def _live(self, kind: str, key: str) -> dict | None:
        found = self._docs.get((kind, key))
        if found is None or (found[1] is not None and found[1] <= self._clock()):
            return None
        return found[0]

    def put(self, kind: str, key: str, doc: dict, *, expires_at: float | None = None) -> None:
        with self._lock:
            self._docs[(kind, key)] = (dict(doc), expires_at)

    def replace(self, kind: str, key: str, doc: dict, *, expires_at: float | None = None) -> bool:
        with self._lock:
            if self._live(kind, key) is None:
                return False
            self._docs[(kind, key)] = (dict(doc), expires_at)
            return True

    def get(self, kind: str, key: str) -> dict | None:
        with self._lock:
            doc = self._live(kind, key)
            return dict(doc) if doc is not None else None

    def delete(self, kind: str, key: str) -> None:
        with self._lock:
            self._docs.pop((kind, key), None)

    def scan(
        self, kind: str, *, prefix: str = "", limit: int = 1000, newest_first: bool = False
    ) -> list[tuple[str, dict]]:
        with self._lock:
            keys = sorted(
                key
                for doc_kind, key in self._docs
                if doc_kind == kind and key.startswith(prefix) and self._live(kind, key) is not None
            )
            keys = keys[::-1] if newest_first else keys
            return [(key, dict(self._docs[(kind, key)][0])) for key in keys[:limit]]


def session_key(session_id: str) -> str:
    """The record key of a session: its id's SHA-256, so the store holds no usable id."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def user_of(doc: dict) -> User:
    return User(
        subject=str(doc.get("sub", "")),
        email=str(doc.get("email", "")),
        name=str(doc.get("name", "")),
        role=str(doc.get("role", "")),
        claims=doc.get("claims") or {},
    )


class SessionStore:
    """Server-side sessions in a record store, with a short per-worker cache of lookups."""

    def __init__(
        self,
        records: SessionRecords,
        *,
        idle_seconds: float,
        max_seconds: float,
        recheck_seconds: float,
        kiosk_users: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.records = records
        self.idle_seconds = idle_seconds
        self.max_seconds = max_seconds
        self.kiosk_users = frozenset(email.lower() for email in kiosk_users)
        self.clock = clock
        # Read through a lambda: tests replace ``clock`` after construction.
        self._cache: TTLCache | None = (
            TTLCache(CACHED_SESSIONS, recheck_seconds, timer=lambda: self.clock())
            if recheck_seconds > 0
            else None
        )
        self._cache_lock = threading.Lock()

    # ---- the per-worker cache

    def _cached(self, key: str) -> dict | None:
        if self._cache is None:
            return None
        with self._cache_lock:
            return self._cache.get(key)

    def _remember(self, key: str, doc: dict) -> None:
        if self._cache is not None:
            with self._cache_lock:
                self._cache[key] = doc

    def forget(self, key: str) -> None:
        if self._cache is not None:
            with self._cache_lock:
                self._cache.pop(key, None)

    def _store(self, what: str, call: Callable[[], Result]) -> Result:
        try:
            return call()
        except Exception as exc:
            # Any failure of the store: nobody is let in on a guess.
            raise SessionStoreUnavailable(f"session store {what} failed: {exc}") from exc

    # ---- lifetime

    def expires_at(self, doc: dict) -> float:
        """When the session ends unless it is used again: idle or absolute, the earlier."""
        return min(
            float(doc["signed_in_at"]) + self.max_seconds,
            float(doc["seen_at"]) + self.idle_seconds,
        )

    def _expired(self, doc: dict, now: float) -> bool:
        return self.expires_at(doc) <= now  # as the record store: absent from expires_at on

    def create(self, user: User, *, id_token: str, user_agent: str, client_ip: str | None) -> str:
        """Store a new session for ``user``; returns its id (for the cookie only)."""
        now = self.clock()
        session_id = secrets.token_urlsafe(32)
        doc = {
            "sub": user.subject,
            "email": user.email,
            "name": user.name,
            "role": user.role,
            "claims": user.claims,
            "id_token": id_token,
            "signed_in_at": now,
            "seen_at": now,
            "user_agent": user_agent[:300],
            "ip": client_ip,
        }
        key = session_key(session_id)
        self._store(
            "write",
            lambda: self.records.put(SESSION_KIND, key, doc, expires_at=self.expires_at(doc)),
        )
        self._remember(key, doc)
        return session_id

    def lookup(self, key: str, *, active: bool) -> dict | None:
        """The live session under ``key``, or None; ``active`` moves its idle timer on
        (at most once a minute), as does any request of a kiosk user."""
        now = self.clock()
        doc = self._cached(key)
        if doc is not None and self._expired(doc, now):
            doc = None  # perhaps used on another worker since: ask the store
        if doc is None:
            doc = self._store("read", lambda: self.records.get(SESSION_KIND, key))
            if doc is None:
                self.forget(key)
                return None
        if self._expired(doc, now):
            log.info("session %s of %s expired", key[:8], doc.get("email"))
            self.end(key)
            return None
        counts = active or str(doc.get("email", "")).lower() in self.kiosk_users
        if counts and now - float(doc["seen_at"]) >= SEEN_RESOLUTION_SECONDS:
            doc = {**doc, "seen_at": now}
            # Only over a live record: a session ended meanwhile stays ended.
            if not self._store(
                "write",
                lambda: self.records.replace(
                    SESSION_KIND, key, doc, expires_at=self.expires_at(doc)
                ),
            ):
                self.forget(key)
                return None
        self._remember(key, doc)
        return doc

    def end(self, key: str) -> dict | None:
        """Delete one session (a copy of its cookie is refused from now); returns it."""
        self.forget(key)
        doc = self._store("read", lambda: self.records.get(SESSION_KIND, key))
        self._store("delete", lambda: self.records.delete(SESSION_KIND, key))
        self.forget(key)
        return doc

    def sessions(self, subject: str | None = None) -> list[tuple[str, dict]]:
        """Live sessions (of one user when ``subject`` is given), most recently seen first."""
        now = self.clock()
        found = self._store(
            "list", lambda: self.records.scan(SESSION_KIND, limit=MAX_LISTED_SESSIONS)
        )
        live = [
            (key, doc)
            for key, doc in found
            if not self._expired(doc, now) and (subject is None or doc.get("sub") == subject)
        ]
        return sorted(live, key=lambda item: -float(item[1].get("seen_at", 0)))

    def end_all(self, subject: str) -> int:
        """End every session of one user; returns how many there were."""
        ended = self.sessions(subject)
        for key, _doc in ended:
            self._store("delete", lambda key=key: self.records.delete(SESSION_KIND, key))
            self.forget(key)
        return len(ended)


def start_session(store: SessionStore, user: User, *, id_token: str) -> str:
    """Store a new session for ``user`` and put its id in the cookie; returns its key."""
    session_id = store.create(
        user,
        id_token=id_token,
        user_agent=request.headers.get("User-Agent", ""),
        client_ip=request.remote_addr,
    )
    # A new cookie at sign-in: nothing from the anonymous session survives (fixation).
    session.clear()
    session.permanent = True
    session[SID_KEY] = session_id
    return session_key(session_id)


def cookie_session_key() -> str | None:
    """The record key of the session this request's cookie names, if any."""
    session_id = session.get(SID_KEY)
    return session_key(session_id) if isinstance(session_id, str) and session_id else None


def session_user(store: SessionStore, *, active: bool) -> User | None:
    """The user of this request's live session; a cookie naming an ended one is cleared."""
    key = cookie_session_key()
    if key is None:
        return None
    doc = store.lookup(key, active=active)
    if doc is None:
        session.clear()
        return None
    return user_of(doc)


def end_session(store: SessionStore) -> str:
    """End this request's session (record and cookie); returns its ID token, for the
    provider's logout."""
    key = cookie_session_key()
    doc = store.end(key) if key is not None else None
    session.clear()
    return str(doc.get("id_token", "")) if doc else ""
