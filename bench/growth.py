"""Data growth: fleet and customer view latency at 1k, 10k (and, with --full, 100k) customers.

Generating and processing raw uploads for 10k customers x 30 days (300k uploads) would take
longer than the whole quick run, and it is the read side that is measured here. So a fast
synthetic writer produces the PROCESSED form directly: per-customer-day Parquet files with
the processing step's schema and options, one metadata-index record and data version per
file, the app dimension, and the per-date rollup tables the fleet views read (customers, apps,
hours). It skips the raw JSON, the quarantine and the rollups' detail tables, which only the
incremental rollup reads. File contents are drawn from a few dozen templates, so writing is
fast; every customer-day still has its own file under its own key, as processing writes it.
Files are written straight under the local lake root (no fsync, no temporary file): the
writer is a test fixture, not the product.

Each view is timed cold (a fresh service, empty cache table: the Parquet tier) and warm
(the cache table), as the median of a few reads. The growth factor is the latency at the
largest size over the smallest: the fleet view reads one rollup row per customer and day, so
its cold read grows with the fleet while its warm read does not; the customer view reads
one customer's files through the index and should not grow at all.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import random
import sqlite3
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bench.report import Report
from data_access import layout
from data_access.factory import build_stores
from data_access.queries import (
    APP_DIMENSION,
    CustomerDayQuery,
    CustomerTrendQuery,
    FleetAppsQuery,
    FleetDailyQuery,
    FleetHoursQuery,
    Query,
)
from data_access.service import DataService
from data_access.settings import DataSettings
from data_access.stores import UploadRecord

END = dt.date(2026, 11, 1)
DAYS = 30
TEMPLATES = 48
ROLLUP_PARQUET = {"compression": "zstd", "use_dictionary": True}


@dataclass(frozen=True)
class Template:
    """One customer-day's processed file and the totals the rollups need from it."""

    parquet: bytes
    rows: int
    seconds: int
    sessions: int
    pickups: int
    notifications: int
    apps: dict[str, tuple[int, int]]  # app_id -> (seconds, sessions)
    hours: dict[int, int]  # hour -> seconds


def _templates(seed: int) -> list[Template]:
    from pipeline.catalog import APPS
    from pipeline.process import AGGREGATED_SCHEMA, PARQUET_OPTIONS

    rng = random.Random(seed)
    weights = [app.popularity for app in APPS]
    templates = []
    for number in range(TEMPLATES):
        chosen = sorted(set(rng.choices([a.app_id for a in APPS], weights, k=rng.randint(3, 18))))
        rows: dict[tuple[int, str], list[int]] = {}
        if number % 12 != 0:  # some days have no usage at all
            for app_id in chosen:
                for hour in rng.sample(range(7, 24), rng.randint(1, 8)):
                    sessions = rng.randint(1, 6)
                    rows[(hour, app_id)] = [
                        rng.randint(60, 3000),
                        sessions,
                        rng.randint(0, sessions),
                        rng.randint(0, 3 * sessions),
                    ]
        keys = sorted(rows)
        columns = list(zip(*(rows[k] for k in keys), strict=True)) if keys else [()] * 4
        table = pa.Table.from_arrays(
            [
                pa.array([h for h, _ in keys], pa.int8()),
                pa.array([a for _, a in keys], pa.string()),
                pa.array(columns[0], pa.int32()),
                pa.array(columns[1], pa.int16()),
                pa.array(columns[2], pa.int16()),
                pa.array(columns[3], pa.int16()),
            ],
            schema=AGGREGATED_SCHEMA,
        )
        sink = io.BytesIO()
        pq.write_table(table, sink, **PARQUET_OPTIONS)
        apps: dict[str, tuple[int, int]] = {}
        hours: Counter[int] = Counter()
        for (hour, app_id), (seconds, sessions, _, _) in rows.items():
            total, count = apps.get(app_id, (0, 0))
            apps[app_id] = (total + seconds, count + sessions)
            hours[hour] += seconds
        templates.append(
            Template(
                parquet=sink.getvalue(),
                rows=len(keys),
                seconds=sum(v[0] for v in rows.values()),
                sessions=sum(v[1] for v in rows.values()),
                pickups=sum(v[2] for v in rows.values()),
                notifications=sum(v[3] for v in rows.values()),
                apps=apps,
                hours=dict(hours),
            )
        )
    return templates


def _customer(number: int) -> str:
    return f"c{number:07d}"


def _pick(customer: int, day: int) -> int | None:
    """The template of a customer-day; None for a day without an upload (about 1 in 13)."""
    if (customer * 31 + day * 17) % 13 == 0:
        return None
    return (customer * 7919 + day * 104_729) % TEMPLATES


def write_processed_lake(folder: Path, customers: int, *, seed: int = 23) -> DataSettings:
    """The processed form of ``customers`` x ``DAYS`` ending at ``END`` (see the module doc)."""
    from pipeline.catalog import APPS

    settings = DataSettings(lake_root=folder / "lake", state_db=folder / "state.sqlite")
    stores = build_stores(settings)
    templates = _templates(seed)
    for app in APPS:
        stores.records.put(APP_DIMENSION, app.app_id, {"name": app.name, "category": app.category})
    names = {app.app_id: (app.name, app.category) for app in APPS}
    dates = [(END - dt.timedelta(days=DAYS - 1 - n)).isoformat() for n in range(DAYS)]
    uploaded_at = time.time() - customers * DAYS
    per_date: list[Counter[int]] = [Counter() for _ in dates]
    customer_rows: list[list[tuple[str, int]]] = [[] for _ in dates]
    root = settings.lake_root
    records: list[UploadRecord] = []
    versions: list[tuple[str, str]] = []
    for number in range(customers):
        customer = _customer(number)
        for index, date in enumerate(dates):
            chosen = _pick(number, index)
            if chosen is None:
                continue
            template = templates[chosen]
            key = layout.processed_upload_key(customer, date)
            path = root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(descriptor, template.parquet)
            finally:
                os.close(descriptor)
            uploaded_at += 1
            records.append(
                UploadRecord(
                    customer_id=customer,
                    date=date,
                    object_key=key,
                    raw_key=layout.raw_upload_key(customer, date),
                    raw_bytes=0,
                    parquet_bytes=len(template.parquet),
                    rows=template.rows,
                    uploaded_at=uploaded_at,
                    content_hash=f"synthetic-{chosen}",
                )
            )
            per_date[index][chosen] += 1
            customer_rows[index].append((customer, chosen))
        versions.append((layout.customer_version(customer), f"{uploaded_at:.6f}"))
    _bulk_index(settings.state_db, records, versions)
    for index, date in enumerate(dates):
        _write_rollups(root, date, templates, names, per_date[index], customer_rows[index])
    stores.state.put(layout.VERSION_SCREEN_TIME_ROLLUP, f"{time.time():.6f}")
    return settings


def _bulk_index(
    state_db: Path, records: list[UploadRecord], versions: list[tuple[str, str]]
) -> None:
    """Index records and data versions in one SQLite transaction each.

    ``MetadataIndex.put`` commits every record on its own, which at 300k records costs more
    than the rest of the writer; this writes the embedded backend's own tables (the schema
    ``data_access.local`` created when the stores were built) in bulk.
    """
    with sqlite3.connect(state_db) as connection:
        connection.executemany(
            "INSERT OR REPLACE INTO uploads (customer_id, date, object_key, raw_key, raw_bytes,"
            " parquet_bytes, rows, uploaded_at, content_hash) VALUES (?,?,?,?,?,?,?,?,?)",
            [
                (
                    r.customer_id,
                    r.date,
                    r.object_key,
                    r.raw_key,
                    r.raw_bytes,
                    r.parquet_bytes,
                    r.rows,
                    r.uploaded_at,
                    r.content_hash,
                )
                for r in records
            ],
        )
        connection.executemany("INSERT OR REPLACE INTO state (name, value) VALUES (?, ?)", versions)
    connection.close()


def _write_rollups(
    root: Path,
    date: str,
    templates: list[Template],
    names: dict[str, tuple[str, str]],
    counts: Counter[int],
    rows: list[tuple[str, int]],
) -> None:
    """The per-date tables the fleet queries read, with the rollup step's columns."""
    chosen = [templates[t] for _, t in rows]
    customers = pa.table(
        {
            "customer_id": [c for c, _ in rows],
            "day": [date] * len(rows),
            "seconds": pa.array([t.seconds for t in chosen], pa.int64()),
            "sessions": pa.array([t.sessions for t in chosen], pa.int64()),
            "pickups": pa.array([t.pickups for t in chosen], pa.int64()),
            "notifications": pa.array([t.notifications for t in chosen], pa.int64()),
            "apps": pa.array([len(t.apps) for t in chosen], pa.int64()),
        }
    )
    apps: dict[str, list[int]] = {}
    hours: dict[int, list[int]] = {}
    for template_index, count in counts.items():
        template = templates[template_index]
        for app_id, (seconds, sessions) in template.apps.items():
            entry = apps.setdefault(app_id, [0, 0, 0])
            entry[0] += seconds * count
            entry[1] += count
            entry[2] += sessions * count
        for hour, seconds in template.hours.items():
            entry = hours.setdefault(hour, [0, 0])
            entry[0] += seconds * count
            entry[1] += count
    app_ids = sorted(apps)
    app_table = pa.table(
        {
            "day": [date] * len(app_ids),
            "app_id": app_ids,
            "app_name": [names[a][0] for a in app_ids],
            "category": [names[a][1] for a in app_ids],
            "seconds": pa.array([apps[a][0] for a in app_ids], pa.int64()),
            "customers": pa.array([apps[a][1] for a in app_ids], pa.int64()),
            "sessions": pa.array([apps[a][2] for a in app_ids], pa.int64()),
        }
    )
    hour_keys = sorted(hours)
    hour_table = pa.table(
        {
            "day": [date] * len(hour_keys),
            "hour": pa.array(hour_keys, pa.int64()),
            "seconds": pa.array([hours[h][0] for h in hour_keys], pa.int64()),
            "customers": pa.array([hours[h][1] for h in hour_keys], pa.int64()),
        }
    )
    for table_name, table in (("apps", app_table), ("hours", hour_table), ("customers", customers)):
        path = root / layout.screen_time_rollup_key(date, table_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, **ROLLUP_PARQUET)


# ---- measuring -----------------------------------------------------------------------------


def _median_ms(action: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def view_timings(settings: DataSettings, view: list[Query], repeat: int) -> tuple[float, float]:
    """Median ms to answer every query of a view: cold (Parquet) and warm (cache table)."""
    stores = build_stores(settings)
    no_memo = replace(settings, memo_seconds=0)

    def cold() -> None:
        with sqlite3.connect(settings.state_db) as connection:
            connection.execute("DELETE FROM cache")
        service = DataService(stores, no_memo)
        for query in view:
            service.fetch(query)

    cold_ms = _median_ms(cold, repeat)
    warm_service = DataService(stores, no_memo)
    for query in view:
        warm_service.fetch(query)

    def warm() -> None:
        for query in view:
            if warm_service.fetch(query).provenance.tier != "cache":
                raise RuntimeError(f"{query.kind} did not come from the cache table")

    return cold_ms, _median_ms(warm, repeat * 4)  # a cheap read: more samples against noise


def views(customers: int) -> dict[str, list[Query]]:
    start = END - dt.timedelta(days=DAYS - 1)
    customer = _customer(customers // 2 + 1)
    day = END - dt.timedelta(days=3)
    return {
        "fleet view": [
            FleetDailyQuery(start, END),
            FleetAppsQuery(start, END),
            FleetHoursQuery(start, END),
        ],
        "customer view": [
            CustomerTrendQuery(start, END, customer_id=customer),
            CustomerDayQuery(customer, day),
        ],
    }


def growth(report: Report, folder: Path, *, full: bool) -> None:
    sizes = (1_000, 10_000, 100_000) if full else (1_000, 10_000)
    repeat = 7 if full else 5
    timings: dict[tuple[str, str], dict[int, float]] = {}
    for customers in sizes:
        started = time.perf_counter()
        settings = write_processed_lake(folder / f"c{customers}", customers)
        written = time.perf_counter() - started
        for label, view in views(customers).items():
            rows = _check_answers(settings, view, customers)
            cold_ms, warm_ms = view_timings(settings, view, repeat)
            timings.setdefault((label, "cold"), {})[customers] = cold_ms
            timings.setdefault((label, "warm"), {})[customers] = warm_ms
            report.add(
                "growth",
                f"{label} cold (Parquet) @ {customers:,} customers",
                cold_ms,
                unit="ms",
                note=f"{rows:,} rows answered; lake written in {written:.0f} s",
            )
            report.add(
                "growth",
                f"{label} warm (cache table) @ {customers:,} customers",
                warm_ms,
                unit="ms",
                ratio=cold_ms / warm_ms,
                ratio_to="cold (x faster)",
            )
    smallest, largest = sizes[0], sizes[-1]
    for (label, tier), by_size in timings.items():
        factor = by_size[largest] / by_size[smallest]
        report.add(
            "growth",
            f"{label} {tier}: growth {smallest:,} -> {largest:,} customers",
            factor,
            unit="x",
            ratio=largest / smallest,
            ratio_to="customers grew (x)",
            target="customer view ~1x; fleet warm ~1x",
        )


def _check_answers(settings: DataSettings, view: list[Query], customers: int) -> int:
    """The synthetic lake answers like a real one: every day present, the fleet counted."""
    service = DataService(build_stores(settings), replace(settings, memo_seconds=0))
    frames = [service.fetch(query).data for query in view]
    first = frames[0]
    if isinstance(view[0], FleetDailyQuery):
        active = int(first["active_customers"].max())
        if not customers * 0.5 < active <= customers:
            raise RuntimeError(f"fleet counts {active} active customers of {customers}")
    elif len(first) < DAYS * 0.8:
        raise RuntimeError(f"customer trend has {len(first)} days of {DAYS}")
    return sum(len(frame) for frame in frames)
