"""Who used the dashboard recently: one record per signed-in user, counted as active sessions.

Workers write ``session_seen`` records (at most once a minute per user and worker); the
``/metrics`` endpoint and the collectors count them. Counting from the shared records store
keeps the number right however many workers and instances a user's requests reach.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

from data_access.stores import RecordStore

KIND = "session_seen"
ACTIVE_WINDOW_SECONDS = 300
WRITE_EVERY_SECONDS = 60


class SessionTracker:
    def __init__(self, records: RecordStore, *, clock: Callable[[], float] = time.time) -> None:
        self._records = records
        self._clock = clock
        self._written: dict[str, float] = {}
        self._lock = threading.Lock()

    def seen(self, subject: str) -> None:
        key = hashlib.sha256(subject.encode()).hexdigest()[:32]  # no user ids in the store
        now = self._clock()
        with self._lock:
            if now - self._written.get(key, 0.0) < WRITE_EVERY_SECONDS:
                return
            if len(self._written) > 50_000:
                self._written.clear()
            self._written[key] = now
        self._records.put(KIND, key, {"seen_at": now})


def count_active(
    records: RecordStore, now: float, window_seconds: float = ACTIVE_WINDOW_SECONDS
) -> int:
    # Writes are up to a minute apart, so a user seen within the window may carry a stamp
    # up to a minute older.
    since = now - window_seconds - WRITE_EVERY_SECONDS
    return sum(1 for _, doc in records.scan(KIND, limit=100_000) if doc["seen_at"] >= since)
