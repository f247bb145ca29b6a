"""Benchmark sections. Each takes the report, a scratch folder and the mode."""

from __future__ import annotations

import datetime as dt
import json
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from bench.report import Report
from data_access import layout
from data_access.factory import build_stores
from data_access.queries import CustomerTrendQuery, FleetDailyQuery
from data_access.service import DataService
from data_access.settings import DataSettings
from data_access.stores import Stores

END = dt.date(2026, 11, 1)


def _stores(folder: Path) -> tuple[Stores, DataSettings]:
    settings = DataSettings(lake_root=folder / "lake", state_db=folder / "state.sqlite")
    return build_stores(settings), settings


def _sample(folder: Path, customers: int, days: int) -> tuple[Stores, DataSettings]:
    """Generate, process and roll up a sample lake (screen time only unless events are needed)."""
    from pipeline.generate import generate
    from pipeline.process import drain
    from pipeline.rollup import rollup_all

    stores, settings = _stores(folder)
    generate(
        stores.lake,
        queue=stores.queue,
        customers=customers,
        days=days,
        seed=11,
        end_date=END,
        hosts=0,
    )
    drain(stores)
    rollup_all(stores)
    return stores, settings


def _median_seconds(action: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def storage_and_processing(report: Report, folder: Path, *, full: bool) -> None:
    from pipeline.generate import generate
    from pipeline.process import drain

    customers, days = (200, 30) if full else (40, 15)
    stores, _ = _stores(folder)
    generate(
        stores.lake,
        queue=stores.queue,
        customers=customers,
        days=days,
        seed=5,
        end_date=END,
        hosts=0,
    )
    raw = list(stores.lake.list(layout.RAW_SCREEN_TIME))

    # Baseline: only read and parse each upload, the least any processor must do.
    started = time.perf_counter()
    for info in raw:
        json.loads(stores.lake.read_bytes(info.key))
    parse_rate = len(raw) / (time.perf_counter() - started)

    summary = drain(stores)
    rate = summary.uploads_per_second
    report.add(
        "processing",
        "uploads processed per second",
        rate,
        unit="/s",
        ratio=rate / parse_rate,
        ratio_to="read+parse only",
        target=">= 200/s on one core",
        note=f"{summary.handled} uploads of {summary.raw_bytes / summary.handled / 1024:.0f} KiB",
    )
    per_day = summary.parquet_bytes / max(1, summary.processed)
    raw_per_day = summary.raw_bytes / max(1, summary.handled)
    report.add(
        "storage",
        "Parquet bytes per customer-day",
        per_day,
        unit="B",
        ratio=raw_per_day / per_day,
        ratio_to="raw JSON (x smaller)",
        target="<= 2 KB and >= 25x smaller",
    )


def reads(report: Report, folder: Path, *, full: bool) -> None:
    customers, days = (100, 30) if full else (20, 30)
    stores, settings = _sample(folder, customers, days)
    start = END - dt.timedelta(days=29)
    customer_view = CustomerTrendQuery(start, END, customer_id="c0000003")
    fleet_view = FleetDailyQuery(start, END)
    repeat = 15

    for label, query in (
        ("customer 30-day view", customer_view),
        ("fleet 30-day view", fleet_view),
    ):
        cold_s, cache_s, memo_s = _tier_timings(stores, settings, query, repeat)
        report.add("reads", f"{label}: lake (cold)", cold_s * 1e3, unit="ms")
        report.add(
            "reads",
            f"{label}: cache table (warm)",
            cache_s * 1e3,
            unit="ms",
            ratio=cold_s / cache_s,
            ratio_to="cold (x faster)",
        )
        report.add(
            "reads",
            f"{label}: memory memo",
            memo_s * 1e3,
            unit="ms",
            ratio=cold_s / memo_s,
            ratio_to="cold (x faster)",
        )


def _tier_timings(
    stores: Stores, settings: DataSettings, query: object, repeat: int
) -> tuple[float, float, float]:
    """Median seconds for a read that misses every tier, hits the cache table, hits the memo."""
    no_memo = settings.model_copy(update={"memo_seconds": 0})

    def cold() -> None:
        _clear_cache(settings)
        DataService(stores, no_memo).fetch(query)

    cold_s = _median_seconds(cold, repeat)
    warm = DataService(stores, no_memo)
    warm.fetch(query)
    cache_s = _median_seconds(lambda: warm.fetch(query), repeat)
    memo = DataService(stores, settings)
    memo.fetch(query)
    memo_s = _median_seconds(lambda: memo.fetch(query), repeat * 10)
    return cold_s, cache_s, memo_s


def _clear_cache(settings: DataSettings) -> None:
    import sqlite3

    with sqlite3.connect(settings.state_db) as conn:
        conn.execute("DELETE FROM cache")


def figures(report: Report, folder: Path, *, full: bool) -> None:
    """A panel's figure as the code builds it (a plain dict) against the same figure built as a
    ``go.Figure``, each serialised as Dash answers a callback (``to_json_plotly``)."""
    import plotly.graph_objects as go
    from plotly.io.json import to_json_plotly

    from dashboard import figures as builders
    from data_access.queries import FleetAppsQuery, FleetHoursQuery

    customers, repeat = (100, 30) if full else (20, 15)
    stores, settings = _sample(folder, customers, 30)
    service = DataService(stores, settings)
    start = END - dt.timedelta(days=29)
    panels = (
        ("fleet activity", builders.fleet_activity, FleetDailyQuery(start, END)),
        ("top apps", builders.top_apps, FleetAppsQuery(start, END)),
        ("hourly usage", builders.hourly_usage, FleetHoursQuery(start, END)),
    )
    for label, build, query in panels:
        frame = service.fetch(query).data
        as_dict = _median_seconds(lambda b=build, f=frame: to_json_plotly(b(f)), repeat)
        as_figure = _median_seconds(
            lambda b=build, f=frame: to_json_plotly(go.Figure(b(f))), repeat
        )
        report.add(
            "figures",
            f"{label}: build + serialise as a go.Figure",
            as_figure * 1e3,
            unit="ms",
            ratio=as_figure / as_dict,
            ratio_to="the plain dict the code builds (x slower)",
            note=f"dict {as_dict * 1e3:.2f} ms; {len(frame)} rows; median of {repeat}, same run",
        )


def operators(report: Report, folder: Path, *, full: bool) -> None:
    from bench.operators import run_operators

    run_operators(report, folder, full=full)


def scale(report: Report, folder: Path, *, full: bool) -> None:
    from bench.scale import scale as measure_scale

    measure_scale(report, folder, full=full)


# ---- cache: tiers and lake reads under the operators' poll pattern ---------------------------
#
# DataService counters live in each gunicorn worker. /metrics (dashboard.request_metrics) merges
# them across workers, but only as answers per tier: it cannot say how many lake objects (S3
# GETs) or table items a view cost, and no benchmark-only route belongs in the app. So this
# section runs the real app in-process, twice, as two "workers" over the same lake and state
# database, and replays the operators' poll pattern through Flask's test client: each poll
# lands on either worker at random (a load balancer spreads requests, not tabs), and the data
# versions move every few ticks as a rollup run and an upload move them. Counting wrappers
# around the stores count every object read from the lake (an S3 GET on AWS) and every cache,
# state, index and record access (DynamoDB). Time is compressed: the version memo is off, so
# every poll reads its version from the state store (in production a worker reads each version
# at most once a second).


class _Counts(dict):
    def bump(self, name: str, amount: int = 1) -> None:
        self[name] = self.get(name, 0) + amount


class _CountingLake:
    def __init__(self, inner: object, counts: _Counts) -> None:
        self._inner, self._counts = inner, counts

    def read_bytes(self, key: str) -> bytes:
        self._counts.bump("lake_objects")
        return self._inner.read_bytes(key)

    def read_table(self, keys: list[str], columns: list[str] | None = None):
        self._counts.bump("lake_objects", len(keys))
        return self._inner.read_table(keys, columns)

    def read_tables(self, keys: list[str], columns: list[str] | None = None):
        self._counts.bump("lake_objects", len(keys))
        return self._inner.read_tables(keys, columns)

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


class _CountingCache:
    def __init__(self, inner: object, counts: _Counts, *, enabled: bool) -> None:
        self._inner, self._counts, self._enabled = inner, counts, enabled

    def get(self, key: str) -> bytes | None:
        self._counts.bump("cache_gets")
        return self._inner.get(key) if self._enabled else None

    def put(self, key: str, value: bytes, ttl_seconds: int) -> None:
        self._counts.bump("cache_puts")
        if self._enabled:
            self._inner.put(key, value, ttl_seconds)


class _CountingState:
    def __init__(self, inner: object, counts: _Counts) -> None:
        self._inner, self._counts = inner, counts

    def get_many(self, names: list[str]) -> dict[str, str]:
        self._counts.bump("state_items", len(names))
        return self._inner.get_many(names)

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


class _CountingIndex:
    def __init__(self, inner: object, counts: _Counts) -> None:
        self._inner, self._counts = inner, counts

    def customer_days(self, customer_id: str, start: str, end: str):
        self._counts.bump("index_queries")
        return self._inner.customer_days(customer_id, start, end)

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


class _CountingRecords:
    def __init__(self, inner: object, counts: _Counts) -> None:
        self._inner, self._counts = inner, counts

    def scan(self, kind: str, **options: object):
        self._counts.bump("record_scans")
        return self._inner.scan(kind, **options)

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


def _counting_worker(env: dict[str, str], counts: _Counts, *, tiers: bool):
    from dashboard import create_app

    server = create_app(env)
    data = server.extensions["mission_control"].data
    inner = data.stores
    data.stores = replace(
        inner,
        lake=_CountingLake(inner.lake, counts),
        cache=_CountingCache(inner.cache, counts, enabled=tiers),
        index=_CountingIndex(inner.index, counts),
        state=_CountingState(inner.state, counts),
        records=_CountingRecords(inner.records, counts),
    )
    client = server.test_client()
    client.get("/")  # the first request registers Dash's routes and the pages router
    return client, data


def _poll_pattern(lake, *, tiers: bool, ticks: int, bump_every: int, seed: int = 5) -> dict:
    import random

    from bench.serving import dashboard_env, touch_customer
    from devtools.operators import UPDATE_PATH, PageModel, PageSpec, render_body
    from pipeline.generate import customer_id

    env = {
        **dashboard_env(lake, 5.0),
        # Ticks come back to back here: no floor, no version memo (see the comment above).
        "REFRESH_FLOOR_MS": "0",
        "VERSION_MEMO_SECONDS": "0",
        "SECRET_KEY": "bench",
        "LOG_LEVEL": "WARNING",
    }
    if not tiers:
        env["MEMO_SECONDS"] = "0"
    counts = _Counts()
    workers = [_counting_worker(env, counts, tiers=tiers) for _ in range(2)]
    client = workers[0][0]
    dependencies = client.get("/_dash-dependencies").get_json()
    customers = [customer_id(n) for n in (3, 5, 8)]
    specs = [PageSpec("overview", "ours", "/")] * 12 + [
        PageSpec("customer", "ours", "/screen-time", f"?customer={c}&day={lake.day}")
        for c in customers
        for _ in range(2)
    ]
    models: dict[PageSpec, PageModel] = {}
    for spec in set(specs):
        render = render_body(spec, dependencies)
        content = client.post(UPDATE_PATH, data=render, content_type="application/json")
        models[spec] = PageModel(spec, dependencies, content.get_json()["response"], render)
    rng = random.Random(seed)
    tabs = [(models[spec], f"tab-{n}", models[spec].new_panels()) for n, spec in enumerate(specs)]
    stores = build_stores(DataSettings(lake_root=lake.lake_root, state_db=lake.state_db))
    statuses: dict[int, int] = {}
    for tick in range(ticks + 1):
        if tick and tick % bump_every == 0:
            stamp = f"{time.time():.6f}"
            stores.state.put(layout.VERSION_BUSINESS_ROLLUP, stamp)
            stores.state.put(layout.VERSION_SCREEN_TIME_ROLLUP, stamp)
            touch_customer(stores.index, customers[tick // bump_every % 3])
        for model, tab, panels in tabs:
            for panel in panels:
                worker_client = workers[rng.randrange(2)][0]
                body = panel.body(tick, tab, model.state, model.trigger_for(panel))
                answer = worker_client.post(UPDATE_PATH, data=body, content_type="application/json")
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
                panel.remember(answer.status_code, answer.get_data())
    for _, data in workers:
        for tier in ("memory", "cache", "lake", "stale"):
            counts.bump(f"tier_{tier}", getattr(data.counters, tier))
    counts["polls"] = sum(statuses.values())
    counts["answered_204"] = statuses.get(204, 0)
    bad = {status: n for status, n in statuses.items() if status not in (200, 204)}
    if bad:
        raise RuntimeError(f"polls answered {bad}")
    counts["panel_mix"] = dict(Counter(spec.label for spec in specs))
    return counts


def _naive_reads_per_poll(lake, mix: dict[str, int]) -> float:
    """Parquet and JSON files the naive app reads per poll, for the same page mix."""
    from bench import naive_app
    from devtools.operators import UPDATE_PATH, PageModel, PageSpec, render_body

    class CountingNaiveLake(naive_app.NaiveLake):
        files = 0

        def frames(self, paths, columns=None):
            CountingNaiveLake.files += sum(1 for path in paths if path.is_file())
            return super().frames(paths, columns)

        def customer(self, customer, days):
            found = super().customer(customer, days)
            CountingNaiveLake.files += found["day"].nunique() if len(found) else 0
            return found

        def raw_upload(self, customer, day):
            body = super().raw_upload(customer, day)
            CountingNaiveLake.files += body is not None
            return body

    server = naive_app.create_naive_app(lake=CountingNaiveLake(lake.lake_root))
    client = server.test_client()
    client.get("/")
    dependencies = client.get("/_dash-dependencies").get_json()
    search = f"?customer={lake.customer}&day={lake.day}"
    specs = {
        "overview": PageSpec("overview", "naive", "/"),
        "customer": PageSpec("customer", "naive", "/screen-time", search),
    }
    reads: dict[str, tuple[int, int]] = {}
    for label, spec in specs.items():
        render = render_body(spec, dependencies)
        content = client.post(UPDATE_PATH, data=render, content_type="application/json")
        model = PageModel(spec, dependencies, content.get_json()["response"], render)
        panels = model.new_panels()
        before = CountingNaiveLake.files
        for panel in panels:
            body = panel.body(1, "tab", model.state, model.trigger_for(panel))
            answer = client.post(UPDATE_PATH, data=body, content_type="application/json")
            if answer.status_code != 200:
                raise RuntimeError(f"naive {panel.name} answered {answer.status_code}")
        reads[label] = (CountingNaiveLake.files - before, len(panels))
    polls = sum(mix[label] * reads[label][1] for label in mix)
    return sum(mix[label] * reads[label][0] for label in mix) / polls


def cache(report: Report, folder: Path, *, full: bool) -> None:
    from bench.serving import serving_lake

    lake = serving_lake(folder.parent, full=full)
    ticks, bump_every = (120, 40) if full else (36, 12)
    tiered = _poll_pattern(lake, tiers=True, ticks=ticks, bump_every=bump_every)
    plain = _poll_pattern(lake, tiers=False, ticks=ticks, bump_every=bump_every)
    naive_per_poll = _naive_reads_per_poll(lake, tiered["panel_mix"])
    # Data changes seen: the first load, then every version move.
    changes = 1 + ticks // bump_every
    panels_polled = tiered["polls"] // (ticks + 1)
    # Production cadence: a 5 s refresh and a rollup every 5 minutes -> 60 polls per change.
    polls_per_change = panels_polled * 60
    ours = tiered.get("lake_objects", 0) / changes
    without = plain.get("lake_objects", 0) / changes
    fetches = sum(tiered[f"tier_{t}"] for t in ("memory", "cache", "lake"))
    hits = tiered["tier_memory"] + tiered["tier_cache"]
    tabs = " + ".join(f"{n} {label}" for label, n in sorted(tiered["panel_mix"].items()))
    scenario = (
        f"{tiered['polls']:,} polls of {tabs} tabs over 2 workers; "
        f"data changed every {bump_every} ticks"
    )
    # The share of 204s is the scenario's change rate, not a finding: it goes in the note.
    # An unchanged poll reads no data but still reads its versions from the state store.
    unchanged = tiered["answered_204"] / tiered["polls"]
    scenario += f"; {unchanged:.0%} of polls unchanged (204)"
    report.add(
        "cache",
        "tier hit ratio of the reads changed polls made",
        hits / fetches * 100 if fetches else None,
        unit="%",
        note=f"{fetches} reads: memory {tiered['tier_memory']}, cache table "
        f"{tiered['tier_cache']}, lake {tiered['tier_lake']}; {scenario}",
    )
    report.add(
        "cache",
        "lake objects read per data change",
        ours,
        ratio=without / ours if ours else None,
        ratio_to="without memo + cache table (x fewer)",
        target="S3 reads saved >= 90% (issue 4)",
        note=f"without: {without:,.0f}; saved {(1 - ours / without) * 100:.1f}%" if without else "",
    )
    per_k = ours / polls_per_change * 1000
    report.add(
        "cache",
        "lake objects read per 1,000 polls (5 s refresh, 5-min rollups)",
        per_k,
        ratio=naive_per_poll * 1000 / per_k if per_k else None,
        ratio_to="naive app (x fewer)",
        note=f"naive app: {naive_per_poll * 1000:,.0f} (every poll reads its files)",
    )
    per_poll = 1000 / tiered["polls"]
    dynamo_reads = (
        tiered.get("cache_gets", 0) + tiered.get("index_queries", 0) + tiered.get("record_scans", 0)
    )
    report.add(
        "cache",
        "cache/index/record reads per data change (DynamoDB on AWS)",
        dynamo_reads / changes,
        note=f"plus version lookups: {tiered.get('state_items', 0) * per_poll:,.0f} items per "
        "1,000 polls with the memo off; with it, at most 1 per version name per worker-second",
    )
    report.add(
        "cache",
        "cache table writes per data change (DynamoDB on AWS)",
        tiered.get("cache_puts", 0) / changes,
    )


def pipeline(report: Report, folder: Path, *, full: bool) -> None:
    """Events accepted per second (the live-data bench) and rollup time for a day of data."""
    from bench.ingest import bench_ingest
    from pipeline.generate import generate
    from pipeline.process import drain
    from pipeline.rollup import rollup_screen_time

    figures = bench_ingest(folder / "ingest", full=full)
    clients = figures.get("clients")
    for name, label in (("single", "one event per request"), ("batch100", "batches of 100")):
        durable = figures.get(f"{name}_durable_events_per_second")
        unsynced = figures.get(f"{name}_unsynced_events_per_second")
        report.add(
            "pipeline",
            f"events accepted per second, {label}",
            durable,
            unit="/s",
            ratio=durable / unsynced if durable and unsynced else None,
            ratio_to="durability off",
            note=f"202 only after fsync; {clients} clients, gunicorn 2x4",
        )
    report.add(
        "pipeline",
        "business rollup of one day of events",
        figures.get("day_rollup_seconds"),
        unit="s",
        note=f"{figures.get('day_events', 0):,} events; compaction to Parquet "
        f"{figures.get('day_compact_seconds', 0):.2f} s",
    )

    customers = 2000 if full else 300
    stores, _ = _stores(folder / "screen-day")
    generate(
        stores.lake, queue=stores.queue, customers=customers, days=1, seed=9, end_date=END, hosts=0
    )
    drain(stores)
    started = time.perf_counter()
    summary = rollup_screen_time(stores)
    seconds = time.perf_counter() - started
    report.add(
        "pipeline",
        "screen-time rollup of one day of uploads",
        seconds,
        unit="s",
        note=f"{summary.uploads_read:,} uploads -> {len(summary.screen_time_dates)} date "
        f"partitions; {seconds / max(1, summary.uploads_read) * 1e3:.2f} ms per upload",
    )


def browser(report: Report, folder: Path, *, full: bool) -> None:
    from bench.browser_paint import browser as paint

    paint(report, folder, full=full)


def aws(report: Report, folder: Path, *, full: bool) -> None:
    from bench.aws_section import aws as on_local_servers

    on_local_servers(report, folder, full=full)


def cost(report: Report, folder: Path, *, full: bool) -> None:
    from bench.cost import cost as counted

    counted(report, folder, full=full)


SECTIONS: dict[str, Callable[..., None]] = {
    "storage": storage_and_processing,
    "reads": reads,
    "pipeline": pipeline,
    "scale": scale,
    "figures": figures,
    "operators": operators,
    "cache": cache,
    "browser": browser,
    "aws": aws,
    "cost": cost,
}
