"""Bounded load: simulated operators against two instances behind nginx.

Two gunicorn instances (the image's command, 2 workers x 4 threads each) serve one local
lake behind a round-robin nginx on loopback. Operators open pages and poll every panel each
second with the version they hold (see ``operators.py``); meanwhile a writer lands a new
upload and rolls it up every few seconds, so panels keep getting new versions to fetch.

Checked: zero errors and zero degraded answers, p95 within ``P95_BUDGET_MS``, both
instances served, worker memory flat after warm-up (growth within ``MEMORY_NOISE``), and
the lake reconciles afterwards. The quick tier runs about a minute; the ``slow`` tier
several minutes with twice the operators.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests

from data_access import layout
from data_access.stores import Stores
from devtools.servers import LOOPBACK
from pipeline.generate import customer_profile, screen_time_upload
from pipeline.process import drain
from pipeline.rollup import rollup_all
from tests.integrity.checks import assert_reconciled
from tests.load.operators import DashSite, LoadSummary, Operator, run_operators
from tests.plugins.browser import SampleLake, build_sample_lake
from tests.prod.processes import LoopbackProcess, gunicorn_instance, nginx_proxy

# p95 of every request (page loads, first answers, polls) on a shared 2-core machine. The
# benchmark's target for polls alone is 100 ms; this bound leaves room for the machine's
# other work, and still fails a poll path that builds figures or reads Parquet every time.
P95_BUDGET_MS = 250.0
# Resident memory of a worker may move this much after warm-up: allocator noise and the
# bounded caches settling. A leak of a few KB per request exceeds it within the quick run.
MEMORY_NOISE = 0.15
MEMORY_NOISE_MB = 12.0
WARM_UP_SECONDS = 12.0
WRITE_EVERY_SECONDS = 6.0
REFRESH_SECONDS = 1.0


@dataclass
class Cluster:
    proxy: LoopbackProcess
    instances: list[LoopbackProcess]
    lake: SampleLake

    def workers(self) -> list[psutil.Process]:
        found = []
        for instance in self.instances:
            assert instance.pid is not None
            found.extend(psutil.Process(instance.pid).children())
        return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("load")
    lake = build_sample_lake(
        root / "data", customers=12, days=14, end_date=dt.datetime.now(dt.UTC).date()
    )
    shared = {
        "DATA_BACKEND": "local",
        "AUTH_MODE": "dev",
        "SECRET_KEY": "load-test-secret",
        "LAKE_ROOT": str(lake.settings.lake_root),
        "STATE_DB": str(lake.settings.state_db),
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "4",
        "FORWARDED_ALLOW_IPS": LOOPBACK,
        "PROXY_FIX_X_FOR": "1",
        "PROXY_FIX_X_PROTO": "1",
        "REFRESH_CHOICES_MS": "1000,5000",
        "REFRESH_DEFAULT_MS": "1000",
        "VERSION_MEMO_SECONDS": "0.5",
        "LOG_LEVEL": "warning",
        # No recycling of workers after N requests: it would hide a leak from the check.
        "GUNICORN_MAX_REQUESTS": "0",
    }
    instances = [gunicorn_instance(name, root / name, shared) for name in ("a", "b")]
    proxy = nginx_proxy(root / "nginx", [instance.port for instance in instances])
    try:
        for instance in instances:
            instance.launch()
        for instance in instances:
            instance.wait_ready()
        proxy.start()
        yield Cluster(proxy, instances, lake)
    finally:
        proxy.stop()
        for instance in instances:
            instance.stop()


def _pages(lake: SampleLake) -> list[tuple[str, str]]:
    day = lake.end_date.isoformat()
    return [
        ("/", ""),
        ("/screen-time", ""),
        ("/revenue", ""),
        ("/screen-time", f"?customer={customer_profile(lake.seed, 1, lake.end_date).customer_id}"),
        ("/screen-time", f"?customer={customer_profile(lake.seed, 2, lake.end_date).customer_id}"),
        ("/screen-time", f"?range=30d&day={day}"),
    ]


class Writer:
    """New uploads while the operators poll: each one processed and rolled up."""

    def __init__(self, lake: SampleLake) -> None:
        self.lake = lake
        self.stores: Stores = lake.stores()
        self.written: list[str] = []
        self._next_customer = lake.customers

    def write_one(self) -> None:
        for number in range(self._next_customer, self._next_customer + 50):
            profile = customer_profile(self.lake.seed, number, self.lake.end_date)
            data = screen_time_upload(self.lake.seed, profile, self.lake.end_date)
            key = layout.raw_upload_key(profile.customer_id, self.lake.end_date.isoformat())
            self._next_customer = number + 1
            if data is None or not json.loads(data)["sessions"] or self.stores.lake.exists(key):
                continue
            self.stores.lake.write_bytes(key, data)
            self.stores.queue.send([key])
            self.written.append(key)
            break
        drain(self.stores)
        rollup_all(self.stores)

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(WRITE_EVERY_SECONDS):
            self.write_one()


def _rss_mb(workers: list[psutil.Process]) -> dict[int, float]:
    return {worker.pid: worker.memory_info().rss / 2**20 for worker in workers}


def _load_run(cluster: Cluster, operators: int, seconds: float) -> None:
    site = DashSite(cluster.proxy.url)
    writer = Writer(cluster.lake)
    memory: dict[str, dict[int, float]] = {}
    series: list[float] = []  # total worker RSS (MB) every 30 s after warm-up

    def during(stop: threading.Event) -> None:
        writing = threading.Thread(target=writer.run, args=(stop,), daemon=True)
        writing.start()
        if not stop.wait(WARM_UP_SECONDS):
            memory["warm"] = _rss_mb(cluster.workers())
        # Every half minute, and a last sample shortly before the end, while operators poll.
        end_at = time.monotonic() + max(0.0, seconds - WARM_UP_SECONDS - 3.0)
        while not stop.wait(min(30.0, max(0.0, end_at - time.monotonic()))):
            sample = _rss_mb(cluster.workers())
            series.append(round(sum(sample.values()), 1))
            if time.monotonic() >= end_at:
                memory["end"] = sample
                break
        stop.wait(seconds)
        writing.join(60)

    started = time.monotonic()
    crew: list[Operator] = run_operators(
        site,
        count=operators,
        seconds=seconds,
        pages=_pages(cluster.lake),
        refresh_seconds=REFRESH_SECONDS,
        during=during,
    )
    elapsed = time.monotonic() - started
    samples = [sample for operator in crew for sample in operator.samples]
    summary = LoadSummary.of(samples)
    polls = LoadSummary.of(samples, ["poll"])
    report = {
        "operators": operators,
        "seconds": round(elapsed, 1),
        "requests_per_second": round(summary.requests / elapsed, 1),
        "all": summary.__dict__,
        "polls": polls.__dict__,
        "uploads_written": len(writer.written),
        "rss_mb": memory,
        "rss_total_mb_every_30s": series,
    }
    print("load run:", json.dumps(report, sort_keys=True))

    assert summary.errors == 0, [s for s in samples if s.status not in (200, 204)][:10]
    assert summary.degraded == 0, [s.error for s in samples if s.degraded][:5]
    assert summary.p95_ms <= P95_BUDGET_MS, report
    # New versions were fetched (200) and unchanged ones skipped (204) all along.
    assert summary.by_status.get(200, 0) > 0 and summary.by_status.get(204, 0) > 0, summary
    assert writer.written, "the writer landed no upload"
    upstreams = {
        requests.get(f"{cluster.proxy.url}/healthz", headers={"Connection": "close"}).headers.get(
            "X-Upstream"
        )
        for _ in range(4)
    }
    assert upstreams == {f"{LOOPBACK}:{i.port}" for i in cluster.instances}, upstreams
    assert set(memory) == {"warm", "end"}, memory
    for pid, warm in memory["warm"].items():
        end = memory["end"].get(pid)
        assert end is not None, f"worker {pid} was replaced during the run"
        assert end - warm <= max(warm * MEMORY_NOISE, MEMORY_NOISE_MB), report["rss_mb"]
    assert_reconciled(writer.stores)


def test_operators_against_two_instances_quick(cluster: Cluster) -> None:
    _load_run(cluster, operators=12, seconds=60.0)


@pytest.mark.slow
def test_operators_against_two_instances_for_several_minutes(cluster: Cluster) -> None:
    _load_run(cluster, operators=24, seconds=300.0)


def test_load_helpers_measure_what_they_claim(tmp_path: Path) -> None:
    from tests.load.operators import Sample

    samples = [Sample(0.0, "poll", ms / 1000, 204) for ms in range(1, 101)]
    samples.append(Sample(0.0, "poll", 0.5, 0, error="ConnectionError"))
    summary = LoadSummary.of(samples)
    assert summary.requests == 101
    assert summary.errors == 1
    assert summary.p50_ms == 51.0
    assert summary.p95_ms == 96.0
    assert summary.max_ms == 500.0
