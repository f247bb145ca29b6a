"""A per-key token bucket that every gunicorn worker and every instance share.

Shared through the records store, not Redis: ``put_new`` is a conditional write on both
backends (SQLite ``INSERT OR IGNORE``, DynamoDB ``attribute_not_exists``), so it is atomic
across processes and machines, and the limiter needs nothing the deployment does not
already have. ``REDIS_URL`` is not used here.

The bucket is kept as GCRA (the generic cell rate algorithm, equivalent to a token bucket):
time is cut into slots of ``1 / rate`` seconds and each accepted request claims the next free
slot with ``put_new``. A request at slot ``s`` may claim any slot up to ``s + burst - 1``;
when the next free slot lies beyond that, the bucket is empty and the answer says how long
until a slot comes into reach. Claims are records of kind ``ratelimit:{bucket}`` (one
DynamoDB partition per API key) keyed ``{slot:020d}``; slots far in the past are swept now
and then.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from data_access.stores import RecordStore, StoreUnavailable

log = logging.getLogger(__name__)

KIND = "ratelimit"
MAX_CLAIM_ATTEMPTS = 16
SWEEP_SHARE = 0.01  # one accepted request in a hundred sweeps its bucket's old slots


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_seconds: int  # 0 when allowed
    remaining: int  # requests still allowed right now, after this one


class RateLimiter:
    def __init__(
        self,
        records: RecordStore,
        *,
        clock: Callable[[], float] = time.time,
        fail_open: bool = True,
    ) -> None:
        self._records = records
        self._clock = clock
        # A store outage should not stop ingest: the limiter protects, it does not gate.
        self._fail_open = fail_open

    def _top_slot(self, kind: str) -> int | None:
        newest = self._records.scan(kind, limit=1, newest_first=True)
        return int(newest[0][0]) if newest else None

    def check(self, bucket: str, rate_per_second: float, burst: int) -> Decision:
        """Take one token from ``bucket`` if there is one."""
        try:
            return self._check(bucket, rate_per_second, burst)
        except StoreUnavailable as exc:
            if not self._fail_open:
                raise
            log.warning("rate limiter store unavailable, allowing: %s", exc)
            return Decision(True, 0, 0)

    def _check(self, bucket: str, rate: float, burst: int) -> Decision:
        now = self._clock()
        now_slot = math.floor(now * rate)
        last_slot = now_slot + burst - 1
        kind = f"{KIND}:{bucket}"
        for _ in range(MAX_CLAIM_ATTEMPTS):
            top = self._top_slot(kind)
            slot = now_slot if top is None else max(now_slot, top + 1)
            if slot > last_slot:
                # The slot comes into reach once now_slot reaches slot - burst + 1.
                wait = (slot - burst + 1) / rate - now
                return Decision(False, max(1, math.ceil(wait)), 0)
            if self._records.put_new(kind, f"{slot:020d}", {"at": now}):
                if random.random() < SWEEP_SHARE:
                    self._sweep(kind, now_slot - burst)
                return Decision(True, 0, last_slot - slot)
        # Lost every race: the bucket is contended at this very moment.
        return Decision(False, 1, 0)

    def _sweep(self, kind: str, before_slot: int) -> None:
        for key, _ in self._records.scan(kind, limit=500):
            if int(key) >= before_slot:
                break
            self._records.delete(kind, key)
