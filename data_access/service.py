"""Answers queries cache-first: memo -> cache table -> lake, with provenance.

The caller never sees the tiers: a cache error is a miss (logged), a cache write error never
fails a read, and when the lake is unreachable the last good answer is served marked stale.
The memo is any cache with cachelib's ``get``/``set(key, value, timeout)``: the app passes
flask-caching's (per worker, or Redis shared by every worker); alone, the service keeps one
in process.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

import pandas as pd
import pyarrow as pa

from data_access.queries import Query
from data_access.settings import DataSettings
from data_access.single_flight import Claim, Release, SingleFlight
from data_access.stores import Stores, StoreUnavailable

log = logging.getLogger(__name__)

Tier = Literal["memory", "cache", "lake", "stale"]
# The version of a query whose version lookup failed: its answer can use no cache table entry.
UNKNOWN_VERSION = "unknown"


@dataclass(frozen=True)
class Provenance:
    tier: Tier
    as_of: float  # epoch seconds the lake was read
    version: str
    # Set when a tier failed on the way: e.g. "cache table unreachable" or "lake unreachable".
    problem: str | None = None

    def age(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.as_of)


@dataclass(frozen=True)
class Result:
    data: pd.DataFrame
    provenance: Provenance


class NoData(RuntimeError):
    """The lake is unreachable and no earlier answer exists to fall back on."""


class VersionGone(LookupError):
    """The answer at a pinned data version is no longer kept and the data has moved on."""

    def __init__(self, pinned: str, current: str) -> None:
        super().__init__(f"data version {pinned} is gone; the data is now at {current}")
        self.pinned = pinned
        self.current = current


@dataclass
class TierCounters:
    memory: int = 0
    cache: int = 0
    lake: int = 0
    stale: int = 0
    cache_errors: int = 0
    lake_errors: int = 0

    def __post_init__(self) -> None:
        # Answers per query kind and tier (not a dataclass field: /metrics exports the fields),
        # so a reader can leave its own queries out of a ratio.
        self.by_kind: dict[str, Counter[str]] = {}

    def served(self, tier: str, kind: str) -> None:
        """One answer from ``tier`` (memory, cache, lake or stale) to a query of ``kind``."""
        setattr(self, tier, getattr(self, tier) + 1)
        self.by_kind.setdefault(kind, Counter())[tier] += 1

    def hit_ratio(self, excluding: Collection[str] = ()) -> float:
        """Memory and cache-table answers over all answers, leaving out the query kinds in
        ``excluding`` (e.g. the Health page's own reads, so its tile does not count itself)."""
        counts = Counter(memory=self.memory, cache=self.cache, lake=self.lake)
        for kind in excluding:
            counts.subtract(self.by_kind.get(kind, Counter()))
        hits = counts["memory"] + counts["cache"]
        served = hits + counts["lake"]
        return hits / served if served > 0 else 0.0


def encode(frame: pd.DataFrame, as_of: float) -> bytes:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), b"as_of": repr(as_of).encode()}
    )
    sink = io.BytesIO()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue()


def decode(payload: bytes) -> tuple[pd.DataFrame, float]:
    table = pa.ipc.open_stream(payload).read_all()
    as_of = float(table.schema.metadata[b"as_of"])
    return table.to_pandas(), as_of


class MemoCache(Protocol):
    """What the service needs of a memo: cachelib's ``get`` and ``set``."""

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: Any, timeout: int | None = None) -> Any: ...


class _LruMemo:
    """In-process memo; bounded, with a time to live read from the service's clock."""

    def __init__(self, max_items: int, ttl_seconds: float, clock: Callable[[], float]) -> None:
        self._items: OrderedDict[str, tuple[float, object]] = OrderedDict()
        self._max, self._ttl, self._clock = max_items, ttl_seconds, clock
        self._lock = threading.Lock()

    def get(self, key: str) -> object | None:
        with self._lock:
            item = self._items.get(key)
            if item is None or item[0] <= self._clock():
                return None
            self._items.move_to_end(key)
            return item[1]

    def set(self, key: str, value: object, timeout: float | None = None) -> None:
        with self._lock:
            ttl = self._ttl if timeout is None else timeout
            self._items[key] = (self._clock() + ttl, value)
            self._items.move_to_end(key)
            while len(self._items) > self._max:
                self._items.popitem(last=False)


class DataService:
    def __init__(
        self,
        stores: Stores,
        settings: DataSettings,
        *,
        memo: MemoCache | None = None,
        claim: Claim | None = None,
        release: Release | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stores = stores
        self.settings = settings
        self.counters = TierCounters()
        self._clock = clock
        # Decoded answers by cache key (query + data version): a version never changes its rows,
        # so the memo's lifetime only bounds memory.
        self._memo: MemoCache = (
            memo if memo is not None else _LruMemo(512, settings.memo_seconds, clock)
        )
        self._versions = _LruMemo(4096, settings.version_memo_seconds, clock)
        # Last good answer per query, any version: what a panel shows while the lake is down.
        self._last_good = _LruMemo(1024, 7 * 24 * 3600, clock)
        # ``claim``/``release``: a claim shared by every worker (Redis), so one of them reads.
        self._flights: SingleFlight[Result] = SingleFlight(claim, release)

    # -- versions --------------------------------------------------------------------------

    def version(self, query: Query) -> str:
        """The data version the query's answer depends on; cheap, memoised for about a second."""
        memo_key = query.version_key()
        cached = self._versions.get(memo_key)
        if cached is not None:
            return cached  # type: ignore[return-value]
        version = self._read_version(query)
        # An unknown version is remembered as briefly as a real one, so a poll (gate, then
        # fetch) waits on a failing store once, not twice.
        self._versions.set(memo_key, version)
        return version

    def _read_version(self, query: Query) -> str:
        try:
            return query.read_version(self.stores)
        except StoreUnavailable as exc:
            log.warning("version lookup failed, treating as unknown: %s", exc)
            return UNKNOWN_VERSION

    @staticmethod
    def cache_key(query: Query, version: str) -> str:
        params = "&".join(f"{k}={v}" for k, v in sorted(query.describe().items()))
        digest = hashlib.sha256(f"{query.kind}?{params}#{version}".encode()).hexdigest()[:40]
        return f"q:{query.kind}:{digest}"

    # -- reads -----------------------------------------------------------------------------

    def fetch(self, query: Query) -> Result:
        version = self.version(query)
        key = self.cache_key(query, version)

        # The state and cache tables live in one store (DynamoDB or SQLite): without a version
        # the cache tier is out of reach, and the panel must say it is degraded.
        problem = "cache table unreachable" if version == UNKNOWN_VERSION else None
        memo = self._memo_get(key)
        if memo is not None:
            return self._answered_again(query, memo, problem)
        if self.settings.memo_seconds <= 0:
            return self._read_through(query, key, version, problem)
        # Every operator on a view misses at once when its version moves: one reads.
        result, shared = self._flights.run(
            key,
            lambda: self._memo_get(key),
            lambda: self._read_through(query, key, version, problem),
        )
        return self._answered_again(query, result, problem) if shared else result

    def _answered_again(self, query: Query, result: Result, problem: str | None) -> Result:
        """An answer this caller read nothing for (the memo's, or another caller's): from
        memory, unless it was a stale one, which stays marked stale."""
        tier: Tier = "stale" if result.provenance.tier == "stale" else "memory"
        self.counters.served(tier, query.kind)
        provenance = replace(
            result.provenance, tier=tier, problem=result.provenance.problem or problem
        )
        return replace(result, provenance=provenance)

    def _read_through(self, query: Query, key: str, version: str, problem: str | None) -> Result:
        """The answer from the cache table, else the lake, else the last good one (stale)."""
        payload = None
        if version != UNKNOWN_VERSION:
            try:
                payload = self.stores.cache.get(key)
            except StoreUnavailable as exc:
                self.counters.cache_errors += 1
                problem = "cache table unreachable"
                log.warning("cache read failed, reading the lake: %s", exc)
        if payload is not None:
            frame, as_of = decode(payload)
            result = Result(frame, Provenance("cache", as_of, version, problem))
            self.counters.served("cache", query.kind)
            self._remember(query, key, result, payload, to_cache_table=False)
            return result

        try:
            frame = query.load(self.stores)
        except StoreUnavailable as exc:
            self.counters.lake_errors += 1
            log.warning("lake read failed for %s: %s", query.kind, exc)
            last = self._last_good.get(repr(query))
            if last is None:
                raise NoData(f"lake unreachable and no earlier data for {query.kind}") from exc
            self.counters.served("stale", query.kind)
            return replace(
                last, provenance=replace(last.provenance, tier="stale", problem="lake unreachable")
            )  # type: ignore[arg-type]
        as_of = self._clock()
        result = Result(frame, Provenance("lake", as_of, version, problem))
        self.counters.served("lake", query.kind)
        self._remember(query, key, result, encode(frame, as_of), to_cache_table=problem is None)
        return result

    def fetch_at(self, query: Query, version: str) -> Result:
        """The query's answer at exactly ``version`` (as a panel showed it), or ``VersionGone``.

        Kept answers come first (memo, cache table, last good answer); when none
        holds that version, the lake is read only if the version is still current before and
        after the read, so data that moved on during the read is refused, not served as it.
        """
        pinned = version.removeprefix("stale:")  # what a panel shows while the lake is down
        if pinned == UNKNOWN_VERSION:
            raise VersionGone(version, self.version(query))
        key = self.cache_key(query, pinned)
        memo = self._memo_get(key)
        if memo is not None:
            self.counters.served("memory", query.kind)
            return memo
        payload = None
        try:
            payload = self.stores.cache.get(key)
        except StoreUnavailable as exc:
            self.counters.cache_errors += 1
            log.warning("cache read failed for a pinned read: %s", exc)
        if payload is not None:
            frame, as_of = decode(payload)
            self.counters.served("cache", query.kind)
            return Result(frame, Provenance("cache", as_of, pinned))
        last = self._last_good.get(repr(query))
        if last is not None and last.provenance.version == pinned:  # type: ignore[attr-defined]
            return last  # type: ignore[return-value]
        # Read fresh, not from the version memo: a second-old version could be a moved one.
        current = self._read_version(query)
        if current != pinned:
            raise VersionGone(pinned, current)
        try:
            frame = query.load(self.stores)
        except StoreUnavailable as exc:
            self.counters.lake_errors += 1
            raise NoData(f"lake unreachable for {query.kind}: {exc}") from exc
        after = self._read_version(query)
        if after != pinned:
            raise VersionGone(pinned, after)
        as_of = self._clock()
        result = Result(frame, Provenance("lake", as_of, pinned))
        self.counters.served("lake", query.kind)
        self._remember(query, key, result, encode(frame, as_of), to_cache_table=True)
        return result

    def _remember(
        self, query: Query, key: str, result: Result, payload: bytes, *, to_cache_table: bool
    ) -> None:
        clean = replace(result, provenance=replace(result.provenance, problem=None))
        # A zero lifetime means no memo (cachelib would read 0 as "never expires").
        if self.settings.memo_seconds > 0:
            try:
                self._memo.set(key, clean, timeout=self.settings.memo_seconds)
            except Exception as exc:  # a memo outage must never fail a read
                log.warning("memo write failed: %s", exc)
        self._last_good.set(repr(query), clean)
        if to_cache_table and result.provenance.version != UNKNOWN_VERSION:
            try:
                self.stores.cache.put(key, payload, self.settings.cache_ttl_seconds)
            except StoreUnavailable as exc:
                self.counters.cache_errors += 1
                log.warning("cache write failed, answer still served: %s", exc)

    def _memo_get(self, key: str) -> Result | None:
        try:
            found = self._memo.get(key)
        except Exception as exc:  # e.g. an entry a different release wrote: a miss
            log.warning("memo read failed: %s", exc)
            return None
        return found if isinstance(found, Result) else None
