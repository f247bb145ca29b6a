"""Health probes for the system-health view: each dependency checked with a timeout.

Probes run concurrently on a small thread pool, and one round's results are memoised for a
few seconds: however many operators poll the health page, each worker probes at most once
per memo period (callers arriving while a round runs wait for it instead of starting another).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import platform
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Literal

import psutil
import requests

from data_access import layout
from data_access.stores import CacheTable, Lake, Stores

log = logging.getLogger(__name__)

Status = Literal["up", "degraded", "down", "unconfigured"]
Kind = Literal["app", "cache", "lake", "identity", "endpoint"]

# An answer slower than this share of the timeout counts as degraded.
SLOW_SHARE_OF_TIMEOUT = 0.5


@dataclass(frozen=True)
class ProbeResult:
    name: str
    kind: Kind
    status: Status
    latency_ms: float
    detail: str


class ProbeFailed(RuntimeError):
    """A check's own verdict that the dependency is down; its message is shown as is."""


@dataclass(frozen=True)
class CheckOutcome:
    """What a check reports when it returns (raising means down)."""

    detail: str
    degraded: bool = False


@dataclass(frozen=True)
class Probe:
    name: str
    kind: Kind
    check: Callable[[], CheckOutcome]


# ---- checks --------------------------------------------------------------------------------


def cache_check(cache: CacheTable, key_suffix: str) -> Callable[[], CheckOutcome]:
    """Put a fresh token under a probe key and read it back."""

    def check() -> CheckOutcome:
        key = f"probe:health:{key_suffix}"
        token = secrets.token_hex(8).encode()
        cache.put(key, token, 300)
        read_back = cache.get(key)
        if read_back != token:
            raise ProbeFailed("read back a different value than written")
        return CheckOutcome("put + get of a probe key")

    return check


def lake_check(lake: Lake, today: Callable[[], dt.date]) -> Callable[[], CheckOutcome]:
    """List today's fleet rollup partition: one small listing, never a walk of the lake."""

    def check() -> CheckOutcome:
        prefix = f"{layout.ROLLUP_SCREEN_TIME}date={today().isoformat()}/"
        count = sum(1 for _ in lake.list(prefix))
        return CheckOutcome(f"listed {prefix}: {count} objects")

    return check


def http_check(url: str, timeout_seconds: float) -> Callable[[], CheckOutcome]:
    """GET with a timeout; any status below 500 means the endpoint is serving."""

    def check() -> CheckOutcome:
        with requests.get(
            url, timeout=timeout_seconds, allow_redirects=False, stream=True
        ) as response:
            code = response.status_code
        if code >= 500:
            raise ProbeFailed(f"HTTP {code}")
        return CheckOutcome(f"HTTP {code}")

    return check


@dataclass
class ErrorCounts:
    """Store errors the data service has counted so far (a snapshot)."""

    cache_errors: int = 0
    lake_errors: int = 0


def app_check(
    error_counts: Callable[[], ErrorCounts], started_at: float, clock: Callable[[], float]
) -> Callable[[], CheckOutcome]:
    """This worker answers; degraded when it met store errors since the previous probe."""
    previous = [error_counts()]

    def check() -> CheckOutcome:
        now_counts = error_counts()
        before, previous[0] = previous[0], now_counts
        new_cache = now_counts.cache_errors - before.cache_errors
        new_lake = now_counts.lake_errors - before.lake_errors
        uptime = _duration(clock() - started_at)
        detail = f"worker {os.getpid()}, up {uptime}, Python {platform.python_version()}"
        if new_cache or new_lake:
            return CheckOutcome(
                f"{detail}; {new_cache} cache and {new_lake} lake errors since last probe",
                degraded=True,
            )
        return CheckOutcome(detail)

    return check


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172_800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86_400} d"


# ---- running -------------------------------------------------------------------------------


def run_probe(probe: Probe, timeout_seconds: float, clock: Callable[[], float]) -> ProbeResult:
    """Run one check in the calling thread; its own timeouts bound it."""
    started = clock()
    try:
        outcome = probe.check()
    except Exception as exc:
        latency = (clock() - started) * 1000
        log.info("probe %s down: %s", probe.name, exc)
        return ProbeResult(probe.name, probe.kind, "down", latency, _describe_error(exc))
    latency = (clock() - started) * 1000
    status: Status = "degraded" if outcome.degraded else "up"
    detail = outcome.detail
    if status == "up" and latency > SLOW_SHARE_OF_TIMEOUT * timeout_seconds * 1000:
        status = "degraded"
        detail = f"{detail}; slow ({latency:.0f} ms)"
    return ProbeResult(probe.name, probe.kind, status, latency, detail)


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, ProbeFailed):
        return str(exc)
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "connection refused or unreachable"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


class ProbeRunner:
    """Runs every probe concurrently, each bounded by the timeout, memoising a round."""

    def __init__(
        self,
        probes: Sequence[Probe],
        *,
        timeout_seconds: float,
        memo_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        max_workers: int = 8,
    ) -> None:
        self.probes = tuple(probes)
        self.timeout_seconds = timeout_seconds
        self.memo_seconds = memo_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._results: tuple[ProbeResult, ...] = ()
        self._expires_at = float("-inf")
        self.rounds = 0  # how many rounds actually probed (the memo saves the rest)
        self.probed_at = 0.0  # epoch seconds the latest round started

    def results(self) -> tuple[ProbeResult, ...]:
        return self.latest_round()[1]

    def latest_round(self) -> tuple[int, tuple[ProbeResult, ...]]:
        """The round number and results, probing again only once the memo has expired."""
        with self._lock:
            if self._clock() < self._expires_at:
                return self.rounds, self._results
            self.probed_at = self._wall_clock()
            self._results = self._probe_all()
            self._expires_at = self._clock() + self.memo_seconds
            self.rounds += 1
            return self.rounds, self._results

    def _probe_all(self) -> tuple[ProbeResult, ...]:
        if self._pool is None:
            # Created on first use, not at construction: forking servers start workers later.
            self._pool = ThreadPoolExecutor(self._max_workers, thread_name_prefix="health-probe")
        started = self._clock()
        futures = [
            self._pool.submit(run_probe, probe, self.timeout_seconds, self._clock)
            for probe in self.probes
        ]
        deadline = started + self.timeout_seconds
        results = []
        for probe, future in zip(self.probes, futures, strict=True):
            try:
                results.append(future.result(timeout=max(0.0, deadline - self._clock())))
            except FutureTimeout:
                # The check keeps its thread until its own timeout; the page does not wait.
                results.append(
                    ProbeResult(
                        probe.name,
                        probe.kind,
                        "down",
                        self.timeout_seconds * 1000,
                        f"no answer within {self.timeout_seconds:g} s",
                    )
                )
        return tuple(results)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def unconfigured(name: str, kind: Kind, detail: str) -> ProbeResult:
    """A tile for a dependency this deployment does not use."""
    return ProbeResult(name, kind, "unconfigured", 0.0, detail)


def build_probes(
    stores: Stores,
    *,
    error_counts: Callable[[], ErrorCounts],
    endpoints: Sequence[tuple[str, str]],
    identity_url: str | None,
    timeout_seconds: float,
    started_at: float,
    clock: Callable[[], float] = time.time,
) -> list[Probe]:
    """The standard set: this app, the cache table, the lake, the IdP if any, then endpoints."""
    probes = [
        Probe("Dashboard app", "app", app_check(error_counts, started_at, clock)),
        Probe("Cache table", "cache", cache_check(stores.cache, f"{os.getpid()}")),
        Probe("Lake", "lake", lake_check(stores.lake, lambda: dt.datetime.now(dt.UTC).date())),
    ]
    if identity_url:
        probes.append(
            Probe("Identity provider", "identity", http_check(identity_url, timeout_seconds))
        )
    probes.extend(
        Probe(name, "endpoint", http_check(url, timeout_seconds)) for name, url in endpoints
    )
    return probes


# ---- this machine --------------------------------------------------------------------------


@dataclass(frozen=True)
class HostSnapshot:
    cpu_percent: float
    cpu_per_core: tuple[float, ...]
    memory_percent: float
    memory_used_bytes: int
    memory_total_bytes: int
    swap_percent: float
    swap_used_bytes: int
    swap_total_bytes: int
    disk_percent: float
    disk_used_bytes: int
    disk_total_bytes: int
    net_bytes_sent: int
    net_bytes_recv: int
    # Bytes per second since the previous snapshot this reader took (None on the first).
    net_sent_per_second: float | None
    net_recv_per_second: float | None


def _busy_percent(before: Any, after: Any) -> float:
    """Share of time a core was busy between two ``psutil.cpu_times`` readings."""
    total = sum(after) - sum(before)
    idle = (after.idle + getattr(after, "iowait", 0.0)) - (
        before.idle + getattr(before, "iowait", 0.0)
    )
    if total <= 0:
        return 0.0
    return round(min(100.0, max(0.0, 100.0 * (total - idle) / total)), 1)


class HostReader:
    """Live values of this machine through psutil, memoised like the probes."""

    def __init__(
        self,
        disk_path: str = "/",
        *,
        memo_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.disk_path = disk_path
        self.memo_seconds = memo_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot: HostSnapshot | None = None
        self._taken_at = float("-inf")
        # Our own CPU baseline: psutil.cpu_percent's is shared by every caller in the process.
        self._cpu_times: list | None = None

    def snapshot(self) -> HostSnapshot:
        with self._lock:
            now = self._clock()
            if self._snapshot is not None and now < self._taken_at + self.memo_seconds:
                return self._snapshot
            if self._cpu_times is None:
                # CPU use is a difference of two readings: the first needs a short baseline.
                self._cpu_times = psutil.cpu_times(percpu=True)
                time.sleep(0.1)
            cpu_times = psutil.cpu_times(percpu=True)
            per_core = tuple(
                _busy_percent(before, after)
                for before, after in zip(self._cpu_times, cpu_times, strict=False)
            )
            self._cpu_times = cpu_times
            memory = psutil.virtual_memory()
            swap = psutil.swap_memory()
            disk = psutil.disk_usage(self.disk_path)
            net = psutil.net_io_counters()
            sent_rate = recv_rate = None
            previous = self._snapshot
            elapsed = now - self._taken_at
            if previous is not None and elapsed > 0:
                sent_rate = max(0.0, (net.bytes_sent - previous.net_bytes_sent) / elapsed)
                recv_rate = max(0.0, (net.bytes_recv - previous.net_bytes_recv) / elapsed)
            self._snapshot = HostSnapshot(
                cpu_percent=sum(per_core) / len(per_core) if per_core else 0.0,
                cpu_per_core=per_core,
                memory_percent=memory.percent,
                memory_used_bytes=memory.total - memory.available,
                memory_total_bytes=memory.total,
                swap_percent=swap.percent,
                swap_used_bytes=swap.used,
                swap_total_bytes=swap.total,
                disk_percent=disk.percent,
                disk_used_bytes=disk.used,
                disk_total_bytes=disk.total,
                net_bytes_sent=net.bytes_sent,
                net_bytes_recv=net.bytes_recv,
                net_sent_per_second=sent_rate,
                net_recv_per_second=recv_rate,
            )
            self._taken_at = now
            return self._snapshot
