"""API keys for machines (ingest clients, device uploads).

A key is ``mck_<key_id>_<secret>``: ``key_id`` (16 hex) names the record, ``secret`` is 256
random bits. The token is shown once, at creation; the records store (kind ``apikey``) keeps
only ``sha256(secret)``, compared in constant time.

Why SHA-256 and not bcrypt: bcrypt and friends are slow on purpose so that guessing a
low-entropy *password* from its hash is expensive. A 256-bit random secret cannot be guessed
whatever the hash speed, and a deliberately slow hash would cost ~100 ms of CPU on every
ingest request: an easy denial of service. So a fast hash is the right tool here.

Last-used times live in the state store (``apikey:last_used:<key_id>``), written at most once a
minute per key per worker: a write to the key document itself could race with a revocation and
undo it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from data_access.stores import RecordStore, StateStore, StoreUnavailable

log = logging.getLogger(__name__)

KIND = "apikey"
SCOPES = ("ingest", "upload")
TOKEN_PREFIX = "mck"
_TOKEN = re.compile(r"mck_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
LAST_USED_WRITE_SECONDS = 60.0
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


class InvalidKey(Exception):
    """No key, a malformed key, an unknown key, a wrong secret or a revoked key."""


class ScopeRefused(Exception):
    """The key is valid but not allowed to do this."""


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: float
    created_by: str
    revoked_at: float | None = None
    revoked_by: str | None = None
    last_used_at: float | None = None
    # Per-key rate overrides; None means the API's defaults.
    rate_per_second: float | None = None
    rate_burst: int | None = None
    secret_hash: str = field(default="", repr=False)

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def public(self) -> dict:
        """What ``api-key list`` shows: everything but the hash."""
        return {
            "key_id": self.key_id,
            "name": self.name,
            "scopes": list(self.scopes),
            "created_at": self.created_at,
            "created_by": self.created_by,
            "revoked_at": self.revoked_at,
            "revoked_by": self.revoked_by,
            "last_used_at": self.last_used_at,
            "rate_per_second": self.rate_per_second,
            "rate_burst": self.rate_burst,
        }


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    token: str  # shown once; never stored


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _from_doc(doc: dict, last_used: float | None = None) -> ApiKey:
    return ApiKey(
        key_id=doc["key_id"],
        name=doc["name"],
        scopes=tuple(doc["scopes"]),
        created_at=doc["created_at"],
        created_by=doc["created_by"],
        revoked_at=doc.get("revoked_at"),
        revoked_by=doc.get("revoked_by"),
        last_used_at=last_used,
        rate_per_second=doc.get("rate_per_second"),
        rate_burst=doc.get("rate_burst"),
        secret_hash=doc["secret_hash"],
    )


def _last_used_name(key_id: str) -> str:
    return f"apikey:last_used:{key_id}"


def create_key(
    records: RecordStore,
    name: str,
    scopes: Iterable[str],
    *,
    created_by: str,
    rate_per_second: float | None = None,
    rate_burst: int | None = None,
    clock: Callable[[], float] = time.time,
) -> CreatedKey:
    scopes = tuple(dict.fromkeys(scopes))
    unknown = sorted(set(scopes) - set(SCOPES))
    if not scopes or unknown:
        raise ValueError(f"scopes must be a non-empty subset of {SCOPES}, not {list(scopes)}")
    if not name.strip() or len(name) > 100:
        raise ValueError("name must be 1-100 characters")
    secret = secrets.token_urlsafe(32)  # 43 characters, 256 bits
    while True:
        key_id = secrets.token_hex(8)
        doc = {
            "key_id": key_id,
            "name": name.strip(),
            "scopes": list(scopes),
            "created_at": clock(),
            "created_by": created_by,
            "revoked_at": None,
            "revoked_by": None,
            "rate_per_second": rate_per_second,
            "rate_burst": rate_burst,
            "secret_hash": _hash(secret),
        }
        if records.put_new(KIND, key_id, doc):  # a colliding id gets a fresh one
            return CreatedKey(_from_doc(doc), f"{TOKEN_PREFIX}_{key_id}_{secret}")


def list_keys(records: RecordStore, state: StateStore) -> list[ApiKey]:
    docs = [doc for _, doc in records.scan(KIND, limit=100_000)]
    used = state.get_many([_last_used_name(doc["key_id"]) for doc in docs])
    return [
        _from_doc(doc, _float_or_none(used.get(_last_used_name(doc["key_id"])))) for doc in docs
    ]


def _float_or_none(text: str | None) -> float | None:
    return float(text) if text else None


def revoke_key(
    records: RecordStore,
    key_id: str,
    *,
    revoked_by: str,
    clock: Callable[[], float] = time.time,
) -> ApiKey:
    doc = records.get(KIND, key_id)
    if doc is None:
        raise KeyError(f"no API key {key_id!r}")
    if doc.get("revoked_at") is None:
        doc = {**doc, "revoked_at": clock(), "revoked_by": revoked_by}
        records.put(KIND, key_id, doc)
    return _from_doc(doc)


def parse_token(token: str) -> tuple[str, str] | None:
    match = _TOKEN.fullmatch(token.strip())
    return (match.group(1), match.group(2)) if match else None


class ApiKeyVerifier:
    """Checks presented tokens. Verified keys are trusted for ``cache_seconds`` per worker,
    so a revocation takes effect within that time everywhere."""

    def __init__(
        self,
        records: RecordStore,
        state: StateStore,
        *,
        cache_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._records, self._state = records, state
        self._cache_seconds, self._clock = cache_seconds, clock
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._last_used_written: dict[str, float] = {}
        self._lock = threading.Lock()

    def _lookup(self, key_id: str) -> ApiKey | None:
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        doc = self._records.get(KIND, key_id)
        key = _from_doc(doc) if doc else None
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()  # bounded: unknown ids cannot grow it without end
            self._cache[key_id] = (now + self._cache_seconds, key)
        return key

    def verify(self, token: str | None, scope: str) -> ApiKey:
        """The key for ``token`` if it is valid, active and has ``scope``."""
        parsed = parse_token(token) if token else None
        if parsed is None:
            raise InvalidKey("missing or malformed API key")
        key_id, secret = parsed
        key = self._lookup(key_id)
        # Compare even for an unknown id, so both paths cost the same.
        expected = key.secret_hash if key else _DUMMY_HASH
        matches = hmac.compare_digest(_hash(secret), expected)
        if key is None or not matches or not key.active:
            raise InvalidKey("unknown or revoked API key")
        if scope not in key.scopes:
            raise ScopeRefused(f"API key {key_id} lacks the {scope!r} scope")
        self._touch(key_id)
        return key

    def _touch(self, key_id: str) -> None:
        now = self._clock()
        with self._lock:
            if now - self._last_used_written.get(key_id, 0.0) < LAST_USED_WRITE_SECONDS:
                return
            self._last_used_written[key_id] = now
        try:
            self._state.put(_last_used_name(key_id), f"{now:.3f}")
        except StoreUnavailable as exc:  # bookkeeping must not refuse a valid key
            log.warning("could not record last use of API key %s: %s", key_id, exc)
