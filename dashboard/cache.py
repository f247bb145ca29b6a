"""The app's caches, through flask-caching: the data memo, the figure cache, the poll floor.

Without ``REDIS_URL`` each worker keeps its own (``SimpleCache``, values kept as objects).
With it, every worker and instance shares one Redis (``RedisCache``): a data version is read
from the lake, and a figure built, once for all of them, and the poll floor holds across
workers. Keys carry the data version, so nothing is stale; lifetimes only bound memory.

A Redis outage is never an error: the failure is logged (at most once a minute), the call
goes to the worker's own ``SimpleCache``, and Redis is tried again a few seconds later.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from cachelib.serializers import BaseSerializer
from flask import Flask
from flask_caching import Cache
from flask_caching.backends.base import BaseCache
from flask_caching.backends.simplecache import SimpleCache
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

MEMO_ITEMS = 512
# A Redis call that takes longer is treated as an outage: a panel must not hang on its cache.
REDIS_TIMEOUT_SECONDS = 0.5
# After a failure each worker leaves Redis alone this long, so an outage costs one failed
# call per worker per interval instead of one per request.
REDIS_RETRY_SECONDS = 5.0
OUTAGE_LOG_EVERY_SECONDS = 60.0
KEY_PREFIX = "mc:"
# Where ``init_caches`` leaves the app's caches in ``server.extensions``.
EXTENSION_KEY = "mc_caches"


class KeptAsObjects(BaseSerializer):
    """A worker's own cache keeps values as they are: no pickling on every hit."""

    def dumps(self, value: Any, protocol: int = pickle.HIGHEST_PROTOCOL) -> Any:
        return value

    def loads(self, bvalue: Any) -> Any:
        return bvalue


def worker_cache(threshold: int, default_timeout: int) -> SimpleCache:
    cache = SimpleCache(threshold=threshold, default_timeout=default_timeout)
    cache.serializer = KeptAsObjects()
    return cache


class RedisOutage:
    """Whether Redis may be tried now; logs an outage at most once a minute, and its end."""

    def __init__(
        self,
        *,
        retry_seconds: float = REDIS_RETRY_SECONDS,
        log_every_seconds: float = OUTAGE_LOG_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._retry_seconds = retry_seconds
        self._log_every = log_every_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._retry_at = 0.0
        self._next_log = 0.0
        self.down = False
        self.failures = 0

    def may_try(self) -> bool:
        return self._clock() >= self._retry_at

    def failed(self, exc: Exception) -> None:
        now = self._clock()
        with self._lock:
            self.down = True
            self.failures += 1
            self._retry_at = now + self._retry_seconds
            if now < self._next_log:
                return
            self._next_log = now + self._log_every
        log.warning("Redis unavailable, caching per worker until it answers: %s", exc)

    def answered(self) -> None:
        if not self.down:
            return
        with self._lock:
            was_down, self.down, self._next_log = self.down, False, 0.0
        if was_down:
            log.warning("Redis answers again: caches are shared again")


class FallbackCache(BaseCache):
    """A shared cache (Redis) with the worker's own cache standing in while Redis fails."""

    def __init__(self, shared: BaseCache, local: BaseCache, outage: RedisOutage) -> None:
        super().__init__(default_timeout=shared.default_timeout)
        self.shared = shared
        self.local = local
        self._outage = outage

    def _call(self, method: str, *args: Any) -> Any:
        if self._outage.may_try():
            try:
                result = getattr(self.shared, method)(*args)
            except redis.RedisError as exc:
                self._outage.failed(exc)
            else:
                self._outage.answered()
                return result
        return getattr(self.local, method)(*args)

    def get(self, key: str) -> Any:
        return self._call("get", key)

    def set(self, key: str, value: Any, timeout: int | None = None) -> Any:
        return self._call("set", key, value, timeout)

    def add(self, key: str, value: Any, timeout: int | None = None) -> Any:
        return self._call("add", key, value, timeout)

    def delete(self, key: str) -> bool:
        return self._call("delete", key)

    def has(self, key: str) -> bool:
        return self._call("has", key)

    def clear(self) -> bool:
        return self._call("clear")


@dataclass(frozen=True)
class AppCaches:
    """What ``create_app`` hands the data service (``memo``) and the panel runner."""

    memo: BaseCache
    figures: BaseCache
    # Figures live as long as memo entries: both are keyed by data version.
    figure_seconds: int
    redis: redis.Redis | None = None
    outage: RedisOutage | None = None

    @property
    def shared(self) -> bool:
        return self.redis is not None

    def claim(self, key: str, seconds: float) -> bool | None:
        """Atomically, across every worker: True if nobody claimed ``key`` in the last
        ``seconds`` (and now this caller has), False if somebody did; None without Redis or
        while it fails, for the caller to decide alone."""
        if self.redis is None or self.outage is None or not self.outage.may_try():
            return None
        try:
            # SET NX PX: one round trip, millisecond lifetimes (cachelib's add has whole
            # seconds and is SETNX then EXPIRE).
            claimed = self.redis.set(
                f"{KEY_PREFIX}claim:{key}", b"1", nx=True, px=max(1, round(seconds * 1000))
            )
        except redis.RedisError as exc:
            self.outage.failed(exc)
            return None
        self.outage.answered()
        return bool(claimed)

    def release(self, key: str) -> None:
        """End a claim before its lifetime (the claimant is done); a failure only logs."""
        if self.redis is None or self.outage is None or not self.outage.may_try():
            return
        try:
            self.redis.delete(f"{KEY_PREFIX}claim:{key}")
        except redis.RedisError as exc:
            self.outage.failed(exc)


def worker_caches(*, memo_seconds: int, figure_items: int) -> AppCaches:
    """Per-worker caches, built without an app (a panel runner alone, in tests)."""
    seconds = max(memo_seconds, 1)
    return AppCaches(
        memo=worker_cache(MEMO_ITEMS, seconds),
        figures=worker_cache(figure_items, seconds),
        figure_seconds=seconds,
    )


def init_caches(
    server: Flask, redis_url: str | None, *, memo_seconds: int, figure_items: int
) -> AppCaches:
    """The app's caches, registered with flask-caching on ``server``."""
    caches = _build_caches(server, redis_url, memo_seconds=memo_seconds, figure_items=figure_items)
    server.extensions[EXTENSION_KEY] = caches
    return caches


def _build_caches(
    server: Flask, redis_url: str | None, *, memo_seconds: int, figure_items: int
) -> AppCaches:
    # cachelib reads a zero lifetime as "never expires"; the service skips a zero memo.
    seconds = max(memo_seconds, 1)
    if redis_url is None:
        per_worker = {"CACHE_TYPE": "SimpleCache", "CACHE_SERIALIZER": KeptAsObjects()}
        return AppCaches(
            memo=_flask_cache(server, per_worker, MEMO_ITEMS, seconds),
            figures=_flask_cache(server, per_worker, figure_items, seconds),
            figure_seconds=seconds,
        )
    client = redis.Redis.from_url(
        redis_url,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        # One quick retry, no backoff: redis-py's default backs off for seconds per call.
        retry=Retry(NoBackoff(), 1),
    )
    outage = RedisOutage()

    def shared(name: str, items: int) -> FallbackCache:
        config = {
            "CACHE_TYPE": "RedisCache",
            "CACHE_REDIS_HOST": client,  # one connection pool for every cache and the floor
            "CACHE_KEY_PREFIX": f"{KEY_PREFIX}{name}:",
        }
        return FallbackCache(
            _flask_cache(server, config, items, seconds), worker_cache(items, seconds), outage
        )

    return AppCaches(
        memo=shared("memo", MEMO_ITEMS),
        figures=shared("figure", figure_items),
        figure_seconds=seconds,
        redis=client,
        outage=outage,
    )


def _flask_cache(server: Flask, config: dict[str, Any], items: int, seconds: int) -> BaseCache:
    cache = Cache(
        server, config={**config, "CACHE_THRESHOLD": items, "CACHE_DEFAULT_TIMEOUT": seconds}
    )
    return server.extensions["cache"][cache]
