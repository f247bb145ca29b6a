"""Host and application metrics, sampled every 10 s per instance into the raw metrics zone.

Each sample becomes one object ``raw/metrics/{yyyy}/{mm}/{dd}/{hh}/{host}-{pid}-{uuid}.jsonl``
of lines ``{"ts": "...Z", "host": ..., "metric": ..., "value": ...}``, which
``pipeline.events.compact_metrics`` turns into Parquet for the health view and the alert rules.

- Host (psutil): CPU total and per core, memory and swap, disk use and I/O, network bytes,
  packets, errors and drops, load, uptime. Counters are reported per interval (deltas).
- Application: read from the gunicorn workers' Prometheus files in
  ``PROMETHEUS_MULTIPROC_DIR`` (written by ``dashboard/request_metrics.py``; same instance, so
  no HTTP scrape is needed): request rate, latency percentiles over the interval, error rate,
  cache hits and reads, and active users from the shared session records.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psutil
from pydantic import model_validator

from configuration.base import MetricsFolderSettings, setting
from data_access.active_sessions import count_active
from data_access.stores import Lake, RecordStore, StoreUnavailable

log = logging.getLogger(__name__)

# The metric families dashboard/request_metrics.py writes; the contract between the two.
REQUESTS_METRIC = "mc_http_requests"
LATENCY_METRIC = "mc_http_request_duration_seconds"
DATA_READS_METRIC = "mc_data_reads"
CACHE_HIT_TIERS = ("memory", "cache")
CACHE_READ_TIERS = ("memory", "cache", "lake")
# Routes that are probes, not user traffic: they would flatter the latency percentiles.
PROBE_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


class CollectorSettings(MetricsFolderSettings):
    """What the collector samples, how often, and under which host name; the web workers'
    request metrics are read from ``PROMETHEUS_MULTIPROC_DIR`` (the shared declaration)."""

    interval_seconds: float = setting(
        10.0,
        "COLLECT_INTERVAL_SECONDS",
        description="sample host and request metrics every this many seconds",
        gt=0,
    )
    host: str = setting(
        "",
        "METRICS_HOST",
        description="host name on collected points",
        shown_default="the host name",
    )
    disk_path: str = setting(
        "/", "COLLECT_DISK_PATH", description="file system whose use is reported", min_length=1
    )

    @model_validator(mode="before")
    @classmethod
    def _this_host(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("host"):
            return {**data, "host": socket.gethostname()}
        return data


Point = tuple[str, float]


def _per_interval(name: str, now: float, before: float | None) -> list[Point]:
    """A counter's increase; nothing on the first sample or after a counter reset."""
    if before is None or now < before:
        return []
    return [(name, float(now - before))]


class HostSampler:
    def __init__(self, disk_path: str = "/") -> None:
        self.disk_path = disk_path
        self._previous: dict[str, float] = {}
        # psutil's CPU percentages are relative to the previous call: prime them.
        psutil.cpu_percent(interval=None)
        psutil.cpu_percent(interval=None, percpu=True)

    def _counters(self) -> dict[str, float]:
        counters: dict[str, float] = {}
        disk = psutil.disk_io_counters()
        if disk is not None:
            counters.update(
                disk_read_bytes=disk.read_bytes,
                disk_write_bytes=disk.write_bytes,
                disk_reads=disk.read_count,
                disk_writes=disk.write_count,
            )
        net = psutil.net_io_counters()
        counters.update(
            net_bytes_sent=net.bytes_sent,
            net_bytes_recv=net.bytes_recv,
            net_packets_sent=net.packets_sent,
            net_packets_recv=net.packets_recv,
            net_errors_in=net.errin,
            net_errors_out=net.errout,
            net_drops_in=net.dropin,
            net_drops_out=net.dropout,
        )
        return counters

    def sample(self) -> list[Point]:
        memory = psutil.virtual_memory()
        swap = psutil.swap_memory()
        disk = psutil.disk_usage(self.disk_path)
        points: list[Point] = [
            ("cpu_percent", psutil.cpu_percent(interval=None)),
            ("memory_percent", memory.percent),
            ("memory_used_bytes", float(memory.total - memory.available)),
            ("memory_total_bytes", float(memory.total)),
            ("swap_percent", swap.percent),
            ("swap_used_bytes", float(swap.used)),
            ("disk_percent", disk.percent),
            ("disk_used_bytes", float(disk.used)),
            ("uptime_seconds", time.time() - psutil.boot_time()),
            ("load_1m", os.getloadavg()[0]),
        ]
        for core, percent in enumerate(psutil.cpu_percent(interval=None, percpu=True)):
            points.append((f"cpu_percent_core_{core}", percent))
        counters = self._counters()
        for name, value in counters.items():
            points += _per_interval(name, value, self._previous.get(name))
        self._previous = counters
        return points


@dataclass
class _RequestTotals:
    requests: float = 0.0
    server_errors: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count
    tiers: dict[str, float] = field(default_factory=dict)


def read_request_totals(multiproc_dir: str) -> _RequestTotals:
    """Totals across every worker of this instance, from the Prometheus multiprocess files."""
    from prometheus_client import multiprocess

    totals = _RequestTotals()
    files = [os.path.join(multiproc_dir, name) for name in os.listdir(multiproc_dir)]
    for metric in multiprocess.MultiProcessCollector.merge([f for f in files if f.endswith(".db")]):
        for sample in metric.samples:
            labels = sample.labels
            if metric.name == REQUESTS_METRIC and sample.name == f"{REQUESTS_METRIC}_total":
                if labels.get("route") in PROBE_ROUTES:
                    continue
                totals.requests += sample.value
                if labels.get("status", "").startswith("5"):
                    totals.server_errors += sample.value
            elif metric.name == LATENCY_METRIC and sample.name == f"{LATENCY_METRIC}_bucket":
                if labels.get("route") in PROBE_ROUTES:
                    continue
                bound = float(labels["le"])
                totals.buckets[bound] = totals.buckets.get(bound, 0.0) + sample.value
            elif metric.name == DATA_READS_METRIC and sample.name == f"{DATA_READS_METRIC}_total":
                tier = labels.get("tier", "")
                totals.tiers[tier] = totals.tiers.get(tier, 0.0) + sample.value
    return totals


def histogram_quantile(quantile: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus' estimate: linear within the bucket holding the rank (cumulative counts)."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = quantile * total
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower_bound  # beyond the largest finite bucket: its bound is the estimate
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return bounds[-1]


class RequestSampler:
    """Request metrics over the interval since the previous sample."""

    def __init__(self, multiproc_dir: str, records: RecordStore | None = None) -> None:
        self.multiproc_dir = multiproc_dir
        self.records = records
        self._previous: _RequestTotals | None = None
        self._previous_at: float | None = None

    def sample(self, now: float) -> list[Point]:
        totals = read_request_totals(self.multiproc_dir)
        previous, previous_at = self._previous, self._previous_at
        self._previous, self._previous_at = totals, now
        points: list[Point] = []
        if self.records is not None:
            try:
                points.append(("active_users", float(count_active(self.records, now))))
            except StoreUnavailable as exc:
                log.warning("active users unavailable: %s", exc)
        if previous is None or previous_at is None or now <= previous_at:
            return points
        if totals.requests < previous.requests:  # the workers restarted with a fresh folder
            previous = _RequestTotals()
        requests = totals.requests - previous.requests
        points.append(("request_rate", requests / (now - previous_at)))
        points.append(("requests", requests))
        if requests > 0:
            errors = totals.server_errors - previous.server_errors
            points.append(("error_rate", max(0.0, errors) / requests))
            delta = {
                bound: count - previous.buckets.get(bound, 0.0)
                for bound, count in totals.buckets.items()
            }
            for quantile, name in (
                (0.5, "latency_p50_ms"),
                (0.95, "latency_p95_ms"),
                (0.99, "latency_p99_ms"),
            ):
                value = histogram_quantile(quantile, delta)
                if value is not None:
                    points.append((name, value * 1000))
        reads = sum(totals.tiers.get(t, 0.0) - previous.tiers.get(t, 0.0) for t in CACHE_READ_TIERS)
        hits = sum(totals.tiers.get(t, 0.0) - previous.tiers.get(t, 0.0) for t in CACHE_HIT_TIERS)
        if reads > 0:
            points += [
                ("cache_reads", reads),
                ("cache_hits", hits),
                ("cache_hit_ratio", hits / reads),
            ]
        return points


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def raw_metrics_key(at: dt.datetime, host: str, pid: int, batch_id: str) -> str:
    safe_host = _UNSAFE.sub("_", host)[:64] or "host"
    return f"raw/metrics/{at:%Y/%m/%d/%H}/{safe_host}-{pid}-{batch_id}.jsonl"


def format_ts(at: dt.datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def write_points(lake: Lake, host: str, points: Iterable[Point], at: dt.datetime) -> str | None:
    """One raw metrics object for one sample; None when there is nothing to write."""
    ts = format_ts(at)
    lines = [
        json.dumps({"ts": ts, "host": host, "metric": name, "value": round(float(value), 6)})
        for name, value in points
        if value == value and abs(value) != float("inf")  # NaN and inf are not JSON
    ]
    if not lines:
        return None
    key = raw_metrics_key(at, host, os.getpid(), uuid.uuid4().hex[:12])
    lake.write_bytes(key, ("\n".join(lines) + "\n").encode())
    return key


class Collector:
    """Samples host and request metrics and writes them; call ``collect_once`` every interval."""

    def __init__(
        self,
        lake: Lake,
        settings: CollectorSettings,
        *,
        records: RecordStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lake = lake
        self.settings = settings
        self.host = settings.host or socket.gethostname()
        self._clock = clock
        self.host_sampler = HostSampler(settings.disk_path)
        self.request_sampler = (
            RequestSampler(settings.multiproc_dir, records)
            if settings.multiproc_dir and os.path.isdir(settings.multiproc_dir)
            else None
        )

    def collect_once(self) -> str | None:
        now = self._clock()
        points = self.host_sampler.sample()
        if self.request_sampler is not None:
            try:
                points += self.request_sampler.sample(now)
            except (OSError, ValueError) as exc:  # a worker file mid-write: skip this round
                log.warning("request metrics unreadable this round: %s", exc)
        return write_points(self.lake, self.host, points, dt.datetime.fromtimestamp(now, dt.UTC))
