"""The AWS backend on the local servers: DynamoDB Local (cache table, index, state) and SeaweedFS.

Two questions, answered in one run on one sample (customers x 30 days, loaded by the real
pipeline):

1. Latency: a 30-day customer view and a 30-day fleet view, answered from the DynamoDB cache
   table against the S3 fallback a cache miss costs (version lookup, cache miss, S3 reads,
   cache write). Each S3 sample follows a new data version, as after a real upload.
2. S3 reads: simulated operators poll their panels every tick over a bounded number of ticks,
   spread over two app workers (each with its own memory memo, one shared cache table),
   while new uploads and rollups bump data versions now and then. Each poll goes through
   the panels' real poll path (``PanelRunner.answer``, the version check included). The same
   workload runs three times: with no cache at all (every panel polls as if it showed
   nothing yet, and every poll reads S3), with only the version check (an unchanged version
   reads nothing; a changed one reads S3), and with the whole read path (version check,
   memory memo, DynamoDB cache table). S3 GetObject calls are counted
   with a botocore event hook on the dashboard's S3 client; the pipeline has its own client.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.report import Report
from bench.serving import touch_customer
from dashboard.components.poll import PanelRunner
from data_access import aws as aws_backend
from data_access import layout
from data_access.queries import (
    CustomerDayQuery,
    CustomerTrendQuery,
    FleetAppsQuery,
    FleetDailyQuery,
    FleetHoursQuery,
    Query,
)
from data_access.service import DataService
from data_access.settings import DataSettings
from data_access.stores import Stores

SECTION = "aws"
END = dt.date(2026, 11, 1)
DAYS = 30
SEED = 23
WORKERS = 2
SAVED_TARGET = 0.90


@dataclass(frozen=True)
class Sizes:
    customers: int
    latency_repeat: int
    operators: int
    ticks: int
    upload_every: int  # ticks between new uploads
    rollup_every: int  # ticks between rollups (a fleet version bump)


QUICK = Sizes(
    customers=30, latency_repeat=7, operators=12, ticks=12, upload_every=2, rollup_every=6
)
FULL = Sizes(
    customers=60, latency_repeat=15, operators=24, ticks=30, upload_every=2, rollup_every=6
)


class GetCounter:
    """Counts S3 GetObject calls made through one boto3 client (thread-safe)."""

    def __init__(self, client: Any) -> None:
        self._lock = threading.Lock()
        self.count = 0
        client.meta.events.register("before-call.s3.GetObject", self._seen)

    def _seen(self, **_: Any) -> None:
        with self._lock:
            self.count += 1


class NoCache:
    """A cache table that never holds anything: the read path without the cache tier."""

    def get(self, key: str) -> bytes | None:
        return None

    def put(self, key: str, value: bytes, ttl_seconds: int) -> None:
        return None


@dataclass
class Backend:
    settings: DataSettings
    pipeline: Stores  # its own S3 client: pipeline reads are not dashboard reads
    dashboard: Stores
    gets: GetCounter


@contextmanager
def local_backend(customers: int, folder: Path) -> Iterator[Backend]:
    """Both servers, a bootstrapped bucket and tables, a processed and rolled-up sample."""
    from bench.local_aws import local_aws

    with ExitStack() as cleanup:
        local = cleanup.enter_context(local_aws("mc-bench", folder))
        settings = local.settings
        dynamodb_client = local.dynamodb()
        pipeline_s3 = local.s3()
        dashboard_s3 = local.s3()
        pipeline = aws_backend.build_aws_stores(settings, s3=pipeline_s3, dynamodb=dynamodb_client)
        dashboard = aws_backend.build_aws_stores(
            settings, s3=dashboard_s3, dynamodb=dynamodb_client
        )
        for stores in (pipeline, dashboard):
            cleanup.callback(stores.lake.close)  # type: ignore[attr-defined]
        load_sample(pipeline, customers)
        yield Backend(settings, pipeline, dashboard, GetCounter(dashboard_s3))


def load_sample(stores: Stores, customers: int) -> None:
    """Device uploads for customers x DAYS, processed and rolled up (screen time only)."""
    from pipeline.generate import customer_profile, screen_time_key, screen_time_upload
    from pipeline.process import drain
    from pipeline.rollup import rollup_screen_time

    for number in range(customers):
        profile = customer_profile(SEED, number, END)
        for offset in range(DAYS):
            day = END - dt.timedelta(days=offset)
            body = screen_time_upload(SEED, profile, day)
            if body is not None:
                key = screen_time_key(profile.customer_id, day)
                stores.lake.write_bytes(key, body)
                stores.queue.send([key])  # as the bucket's notification does
    drain(stores)
    rollup_screen_time(stores)


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def measure_latency(report: Report, backend: Backend, repeat: int) -> None:
    """Cache-table hit against S3 fallback for a 30-day customer view and fleet view."""
    start = END - dt.timedelta(days=DAYS - 1)
    views: list[tuple[str, Query]] = [
        ("customer 30-day view", CustomerTrendQuery(start, END, customer_id="c0000003")),
        ("fleet 30-day view", FleetDailyQuery(start, END)),
    ]
    # No memory memo and no version memo: every fetch goes to DynamoDB at least.
    settings = backend.settings.model_copy(update={"memo_seconds": 0, "version_memo_seconds": 0})
    service = DataService(backend.dashboard, settings)
    for label, query in views:
        # A view may depend on several versions (e.g. the fleet view on each rollup bucket).
        # A customer's views are versioned by their index records instead.
        originals = {name: backend.pipeline.state.get(name) or "0" for name in query.versions()}
        customer = getattr(query, "customer_id", None)
        index = backend.pipeline.index
        records = index.customer_days(customer, "0001-01-01", "9999-12-31") if customer else []
        fallback, hits = [], []
        gets_before = backend.gets.count
        for round_number in range(repeat):
            # A new version: the cache table has no entry yet, as after an upload.
            for name, original in originals.items():
                backend.pipeline.state.put(name, f"{original}-bench-{round_number}")
            if customer:
                touch_customer(index, customer)
            started = time.perf_counter()
            first = service.fetch(query)
            fallback.append(time.perf_counter() - started)
            assert first.provenance.tier == "lake", first.provenance
            started = time.perf_counter()
            second = service.fetch(query)
            hits.append(time.perf_counter() - started)
            assert second.provenance.tier == "cache", second.provenance
        gets_per_fallback = (backend.gets.count - gets_before) / repeat
        for name, original in originals.items():
            backend.pipeline.state.put(name, original)
        if records:
            index.put(records[-1])
        fallback_ms, hit_ms = _median_ms(fallback), _median_ms(hits)
        report.add(
            SECTION,
            f"{label}: S3 fallback (cache miss)",
            fallback_ms,
            unit="ms",
            note=f"median of {repeat}; {gets_per_fallback:.0f} S3 GETs each",
        )
        report.add(
            SECTION,
            f"{label}: DynamoDB cache hit",
            hit_ms,
            unit="ms",
            ratio=fallback_ms / hit_ms,
            ratio_to="S3 fallback (x faster)",
            note=f"median of {repeat}; version lookup + GetItem + decode, 0 S3 GETs",
        )


# ---- the operator workload ------------------------------------------------------------------


@dataclass
class Operator:
    """One browser tab: the panels it shows and the data version each panel shows."""

    panels: list[Query]
    shown: dict[int, str] = field(default_factory=dict)


def watched_customers(customers: int) -> list[str]:
    """The few customers operators drill into, and whose devices upload during the run."""
    return [f"c{number:07d}" for number in random.Random(SEED).sample(range(customers), 3)]


def operators_for(count: int, customers: int) -> list[Operator]:
    """Half watch the fleet (7 or 30 days), half drill into one of a few customers."""
    last30 = END - dt.timedelta(days=DAYS - 1)
    last7 = END - dt.timedelta(days=6)
    watched = watched_customers(customers)
    operators = []
    for index in range(count):
        if index % 2 == 0:
            start = last30 if index % 4 == 0 else last7
            panels: list[Query] = [
                FleetDailyQuery(start, END),
                FleetAppsQuery(start, END),
                FleetHoursQuery(start, END),
            ]
        else:
            customer = watched[index // 2 % len(watched)]
            panels = [
                CustomerTrendQuery(last30, END, customer_id=customer),
                CustomerDayQuery(customer, END - dt.timedelta(days=1)),
            ]
        operators.append(Operator(panels))
    return operators


@dataclass
class WorkloadResult:
    views: int = 0
    gets: int = 0
    tiers: dict[str, int] = field(default_factory=dict)
    # Distinct (view, data version) pairs answered: the fewest S3 reads any cache could do.
    distinct_answers: set[str] = field(default_factory=set)

    @property
    def gets_per_view(self) -> float:
        return self.gets / self.views if self.views else 0.0


def run_workload(
    backend: Backend,
    sizes: Sizes,
    *,
    mode: str,
    new_upload: Callable[[int], None],
    rollup: Callable[[], None],
) -> WorkloadResult:
    """Poll every operator's panels once per tick; ``mode`` is none, versions or full."""
    operators = operators_for(sizes.operators, sizes.customers)
    if mode == "full":
        settings = backend.settings.model_copy(update={"version_memo_seconds": 0})
        stores = backend.dashboard
    else:
        settings = backend.settings.model_copy(
            update={"memo_seconds": 0, "version_memo_seconds": 0}
        )
        stores = replace(backend.dashboard, cache=NoCache())
    # The badge and status renderers hand back their plain data: the tier is read from it.
    workers = [
        PanelRunner(
            DataService(stores, settings),
            floor_seconds=0,
            figure_cache_items=256,
            render_badge=lambda props: props,
            render_status=lambda text: text,
        )
        for _ in range(WORKERS)
    ]
    result = WorkloadResult()
    gets_before = backend.gets.count
    for tick in range(sizes.ticks):
        if tick and tick % sizes.upload_every == 0:
            new_upload(tick)
        if tick and tick % sizes.rollup_every == 0:
            rollup()
        for number, operator in enumerate(operators):
            # gthread keep-alive: a tab's polls stay on one worker for a while, then move.
            worker = workers[random.Random(number * 1_000 + tick // 4).randrange(WORKERS)]
            for index, query in enumerate(operator.panels):
                result.views += 1
                shown = operator.shown.get(index) if mode != "none" else None
                answer = worker.answer(f"panel-{index}", query, shown, f"tab-{number}", len)
                if answer.unchanged:
                    continue  # the panel answers 204: nothing is read
                if answer.badge["tier"] == "error":
                    raise RuntimeError(f"panel {index} could not be answered: {answer.status}")
                operator.shown[index] = answer.version
                result.distinct_answers.add(DataService.cache_key(query, answer.version))
                tier = answer.badge["label"]
                result.tiers[tier] = result.tiers.get(tier, 0) + 1
    result.gets = backend.gets.count - gets_before
    return result


def measure_s3_reads(report: Report, backend: Backend, sizes: Sizes) -> None:
    from pipeline.generate import customer_profile, screen_time_upload
    from pipeline.process import process_upload
    from pipeline.rollup import rollup_screen_time

    upload_seeds = itertools.count(1000)
    watched = watched_customers(sizes.customers)

    def new_upload(tick: int) -> None:
        # A device re-sends yesterday with other sessions: a new version for that customer.
        customer = watched[tick % len(watched)]
        profile = customer_profile(SEED, int(customer[1:]), END)
        day = END - dt.timedelta(days=1)
        body = screen_time_upload(next(upload_seeds), profile, day)
        if body is not None:
            key = layout.raw_upload_key(customer, day.isoformat())
            backend.pipeline.lake.write_bytes(key, body)
            process_upload(backend.pipeline, key)

    def rollup() -> None:
        rollup_screen_time(backend.pipeline)

    results = {
        mode: run_workload(backend, sizes, mode=mode, new_upload=new_upload, rollup=rollup)
        for mode in ("none", "versions", "full")
    }
    none, versions, full = results["none"], results["versions"], results["full"]
    workload = (
        f"{sizes.operators} operators x {sizes.ticks} ticks on {WORKERS} workers, "
        f"upload every {sizes.upload_every} ticks, rollup every {sizes.rollup_every}"
    )
    report.add(
        SECTION,
        "S3 GETs per view: no cache",
        none.gets_per_view,
        note=f"{none.views} panel polls, {none.gets} GETs; {workload}",
    )
    report.add(
        SECTION,
        "S3 GETs per view: version check only",
        versions.gets_per_view,
        ratio=none.gets_per_view / versions.gets_per_view if versions.gets_per_view else None,
        ratio_to="no cache (x fewer)",
        note=f"{versions.gets} GETs; reads on a changed version: {versions.tiers}",
    )
    report.add(
        SECTION,
        "S3 GETs per view: memo + DynamoDB cache",
        full.gets_per_view,
        ratio=none.gets_per_view / full.gets_per_view if full.gets_per_view else None,
        ratio_to="no cache (x fewer)",
        note=(
            f"{full.gets} GETs; answered from tiers: {full.tiers}; "
            f"{len(full.distinct_answers)} distinct (view, version) pairs"
        ),
    )
    saved = 1 - full.gets / none.gets if none.gets else 0.0
    report.add(
        SECTION,
        "S3 reads saved by the cache design",
        saved * 100,
        unit="%",
        target=f">= {SAVED_TARGET:.0%}",
        note="whole read path against every poll reading S3",
    )
    tier_saved = 1 - full.gets / versions.gets if versions.gets else 0.0
    report.add(
        SECTION,
        "S3 reads saved by memo + cache table alone",
        tier_saved * 100,
        unit="%",
        note="against the version check without cache tiers",
    )


def aws(report: Report, folder: Path, *, full: bool) -> None:
    """Cache-hit vs S3 latency and S3 reads per view, on DynamoDB Local and SeaweedFS."""
    sizes = FULL if full else QUICK
    started = time.perf_counter()
    with local_backend(sizes.customers, folder) as backend:
        report.add(
            SECTION,
            "servers up and sample loaded",
            time.perf_counter() - started,
            unit="s",
            note=f"{sizes.customers} customers x {DAYS} days through the pipeline",
        )
        measure_latency(report, backend, sizes.latency_repeat)
        measure_s3_reads(report, backend, sizes)
