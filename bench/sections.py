"""Benchmark sections. Each takes the report, a scratch folder and the mode."""

from __future__ import annotations

import datetime as dt
import json
import statistics
import time
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
    from pipeline.process import process_pending
    from pipeline.rollup import rollup_all

    stores, settings = _stores(folder)
    generate(stores.lake, customers=customers, days=days, seed=11, end_date=END, hosts=0)
    process_pending(stores)
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
    from pipeline.process import process_pending

    customers, days = (200, 30) if full else (40, 15)
    stores, _ = _stores(folder)
    generate(stores.lake, customers=customers, days=days, seed=5, end_date=END, hosts=0)
    raw = list(stores.lake.list(layout.RAW_SCREEN_TIME))

    # Baseline: only read and parse each upload, the least any processor must do.
    started = time.perf_counter()
    for info in raw:
        json.loads(stores.lake.read_bytes(info.key))
    parse_rate = len(raw) / (time.perf_counter() - started)

    summary = process_pending(stores)
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
    no_memo = replace(settings, memo_seconds=0)

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


SECTIONS: dict[str, Callable[..., None]] = {
    "storage": storage_and_processing,
    "reads": reads,
}
