"""Append-only audit log: who did what, when, kept in the backend's record store.

Entries live under kind ``audit`` with time-ordered keys (``{epoch:017.6f}-{random}``), are
written with a conditional put so an entry is never overwritten, and every entry is also
written to the ``auth.audit`` logger so it reaches the log even when the store is down.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from auth.roles import User

AUDIT_KIND = "audit"
log = logging.getLogger("auth.audit")


class AuditRecords(Protocol):
    """The part of ``data_access.stores.RecordStore`` the audit log uses."""

    def put_new(self, kind: str, key: str, doc: dict) -> bool: ...

    def scan(
        self, kind: str, *, prefix: str = "", limit: int = 1000, newest_first: bool = False
    ) -> list[tuple[str, dict]]: ...


def _plain(details: dict) -> dict:
    # Filters may hold dates or tuples; store what JSON can hold, as the store must.
    return json.loads(json.dumps(details, default=str))


class AuditLog:
    def __init__(
        self, records: AuditRecords | None, clock: Callable[[], float] = time.time
    ) -> None:
        self.records = records
        self.clock = clock

    def record(
        self, event: str, user: User | None, details: dict, *, client_ip: str | None = None
    ) -> dict:
        """Append one entry and return it; a store failure is logged, never raised."""
        now = self.clock()
        entry = {
            "at": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            "ts": now,
            "event": event,
            "who": user.label if user else None,
            "subject": user.subject if user else None,
            "role": user.role if user else None,
            "ip": client_ip,
            "details": _plain(details),
        }
        log.info("audit %s", json.dumps(entry, sort_keys=True))
        if self.records is None:
            return entry
        try:
            for _ in range(3):
                key = f"{now:017.6f}-{secrets.token_hex(4)}"
                if self.records.put_new(AUDIT_KIND, key, entry):
                    break
        except Exception:
            # The request goes on: the entry is in the log line above.
            log.exception("audit store write failed for event %s", event)
        return entry

    def recent(self, limit: int = 200) -> list[tuple[str, dict]]:
        """The newest entries, newest first."""
        if self.records is None:
            return []
        return self.records.scan(AUDIT_KIND, limit=limit, newest_first=True)
