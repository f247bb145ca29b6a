"""Scale: what the fleet views, one customer's view and one new upload cost at 10k, 100k and
1M customers (and 5M with --full), and how processing scales with worker processes.

Generating, processing and rolling up 30M real uploads would take hours, so for each size a
lake is SYNTHESIZED in its processed form (30 days ending at ``END``). What is synthesized:

- Content: TEMPLATES customer-days of the real generator (``pipeline.generate``), run through
  the real validation and aggregation (``pipeline.process``) and written with the processing
  step's Parquet options: two of them empty days, two with a session past midnight. Each
  customer-day uses one template, picked by a fixed rule from (customer, day); about 1 in 41
  customer-days has no upload (the generator's device-off days are 2 %).
- The metadata index: one row per customer-day (N x ~29.3), written into the embedded
  backend's own SQLite tables (the schema ``data_access.local`` defines) by one
  ``INSERT ... SELECT`` per table, the rows made in SQL (``MetadataIndex.put`` commits each row
  on its own, which at 30M rows would take hours). The content hash is synthetic (64 hex
  digits, unique per customer-day); the object key is ``layout.processed_upload_key`` of it;
  sizes and row counts are the template's. Upload times are in the past and rise in index
  order (customer, then date) over the DAYS days after the window opens, so the time index
  grows at its end as the rows are appended (the rollup only ever asks for times after its
  watermark).
- The state and record stores: what processing and the rollup leave there: a data version
  per customer, a customer-directory entry per
  customer, the app dimension, the rollup watermark, a data version per summary date.
- The per-date fleet summaries: each template's contribution is computed ONCE by the real
  ``pipeline.rollup.contributions``; a date's summary is the sum of those contributions
  weighted by how many customer-days used each template (a vectorised sum of the same rows
  the fold adds up; ``tests/unit/test_bench.py`` checks it equals what the real fold writes for
  the same customer-days) and is written by the rollup's own writer.
- Parquet objects exist only for the customers the measurements read (a few per size): every
  other index row names an object that was never written. Nothing measured reads those: the
  fleet views read only the summaries and the upload path reads only its own customer-day.
  No raw uploads, quarantine, hourly pipeline counters or business events are synthesized.

What is real: everything measured. The views are the product's queries through a fresh
``DataService`` (cold: empty cache table, the Parquet tier; warm: the cache table; memo: the
in-process memo). A new upload is a real device upload from the generator, written to
``raw/``, sent to the queue and processed by ``pipeline.process.drain``, then folded by
``pipeline.rollup.rollup_screen_time`` (settle 0), against the synthesized index and state
of N customers. The worker figure does not depend on N: ~2,000 uploads written by
``pipeline.generate`` and queued are drained by ``drain_parallel`` with 1 and with 2 workers,
each run on a fresh copy of the same lake, in 3 alternating rounds (medians), before any large
lake is written; its time includes starting the worker processes (also measured alone, on an
empty queue).

All sizes' lakes are on disk at once (~13 GiB for the quick sizes) and measured in rounds,
each round every step on every size in turn, so a change in the machine's load during the run
touches every size alike (other work on the machine does change absolute figures). A round 0
runs everything untimed first, so lazy imports and first-use costs count at no size. Times are
the median of 7 rounds (9 with --full; the cheap warm reads and the idle drain take 4 to 40
samples a round); the 5M lake of --full only fits on disk alone, so it is
measured after the others. A size whose lake would not fit the free disk is skipped and said
so.

Memory, per step: freed memory is handed back to the OS first (gc, glibc's malloc_trim,
Arrow's pool), then the kernel's RSS high-water mark is reset (``/proc/self/clear_refs``) and
the figure is how far above the step's starting RSS it rose, the largest over the rounds
(Linux only; tracemalloc would miss Arrow's allocations and slow the timed code down). The
workers' memory is the largest RSS high-water of the pool processes (``RUSAGE_CHILDREN`` of a
helper process that runs ``drain_parallel``).
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import functools
import gc
import hashlib
import io
import json
import multiprocessing
import os
import resource
import shutil
import sqlite3
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bench.report import Report
from data_access import layout
from data_access.factory import build_stores
from data_access.queries import (
    APP_DIMENSION,
    SUMMARY_COUNTS,
    CustomerDayQuery,
    CustomerTrendQuery,
    FleetAppsQuery,
    FleetDailyQuery,
    FleetHoursQuery,
    Query,
    summary_frame,
)
from data_access.service import DataService
from data_access.settings import DataSettings
from data_access.stores import Stores, UploadRecord

SECTION = "scale"
SEED = 29
END = dt.date(2026, 11, 1)
DAYS = 30
START = END - dt.timedelta(days=DAYS - 1)
NEW_DAY = END + dt.timedelta(days=1)  # the day the measured new uploads are for
TEMPLATES = 48
_EMPTY_TEMPLATES = 2
_SPILL_TEMPLATES = 2
QUICK_SIZES = (10_000, 100_000, 1_000_000)
# The bucket whose compacted parts are written (for every date): the customers viewed are in it.
VIEW_BUCKET = 0
FULL_SIZES = (*QUICK_SIZES, 5_000_000)
# The goals compare these two sizes (in --full mode too), on these figures.
GOAL_SMALL, GOAL_LARGE = 10_000, 1_000_000
GOAL_FIGURES = ("fleet_cold_ms", "upload_total_ms", "idle_drain_ms")
# Memory figures below this are allocator noise: the growth table shows no ratio for them.
MEMORY_NOISE_MIB = 5.0
# The SQLite file per customer-day (index row and its B-trees): ~250 B.
BYTES_PER_CUSTOMER_DAY = 260

# Which customer-days exist and which template each uses: the same rule in SQL and numpy.
_MISSING_N, _MISSING_D, _MISSING_MOD = 31, 17, 41  # (n*31 + d*17) % 41 == 0: no upload
_PICK_N, _PICK_D = 7919, 104_729  # template (n*7919 + d*104729) % TEMPLATES
_PRESENT_SQL = f"(p.n * {_MISSING_N} + d.d * {_MISSING_D}) % {_MISSING_MOD} != 0"
_TEMPLATE_SQL = f"(p.n * {_PICK_N} + d.d * {_PICK_D}) % {TEMPLATES}"
# Completes a synthetic content hash to sha256's 64 hex digits.
_HASH_FILL = hashlib.sha256(b"mission-control synthetic customer-day").hexdigest()[:52]


def customer(number: int) -> str:
    from pipeline.generate import customer_id

    return customer_id(number)


def present(numbers: np.ndarray, day: int) -> np.ndarray:
    return (numbers * _MISSING_N + day * _MISSING_D) % _MISSING_MOD != 0


def template_of(numbers: np.ndarray, day: int) -> np.ndarray:
    return (numbers * _PICK_N + day * _PICK_D) % TEMPLATES


def plan(number: int) -> list[int | None]:
    """The template of each of the customer's DAYS days; None for a day without an upload."""
    numbers = np.array([number], dtype=np.int64)
    return [
        int(template_of(numbers, day)[0]) if present(numbers, day)[0] else None
        for day in range(DAYS)
    ]


def synthetic_hash(number: int, day: int, template: int) -> str:
    return f"{number:08x}{day:02x}{template:02x}{_HASH_FILL}"


def day_counts(customers: int) -> np.ndarray:
    """Customer-days per (day index, template): shape (DAYS, TEMPLATES)."""
    numbers = np.arange(customers, dtype=np.int64)
    counts = np.zeros((DAYS, TEMPLATES), dtype=np.int64)
    for day in range(DAYS):
        chosen = template_of(numbers[present(numbers, day)], day)
        counts[day] = np.bincount(chosen, minlength=TEMPLATES)
    return counts


# ---- templates: real generated customer-days, really processed ------------------------------


@dataclass(frozen=True)
class Template:
    raw: bytes  # the device upload
    raw_key: str  # where the generator's customer-day would live
    parquet: bytes  # the part processing writes for it in a batch of its own
    table: pa.Table  # its aggregated rows
    own_seconds: int  # seconds on its own date (hours 0-23)
    spill_seconds: int  # seconds past midnight (hours 24-47), on the next date


def _processed(raw: bytes, customer_id: str, day: dt.date) -> tuple[pa.Table, bytes]:
    """The aggregated rows of a generated upload, and the part a batch of it alone writes."""
    from pipeline import schema
    from pipeline.process import PART_OPTIONS, PART_SCHEMA, aggregate

    result = schema.validate_upload(
        raw, today=END, key_customer_id=customer_id, key_date=day.isoformat()
    )
    if result.upload is None:
        raise RuntimeError(f"generated upload {customer_id} {day} is invalid: {result.problems}")
    table = aggregate(result.upload)
    n = table.num_rows
    identity = {
        "customer_id": pa.array([customer_id] * n, pa.string()),
        "content_hash": pa.array([hashlib.sha256(raw).hexdigest()[:16]] * n, pa.string()),
        "uploaded_at": pa.array([0.0] * n, pa.float64()),
    }
    part = pa.table({**identity, **{c: table[c] for c in table.column_names}}, schema=PART_SCHEMA)
    sink = io.BytesIO()
    pq.write_table(part, sink, **PART_OPTIONS)
    return table, sink.getvalue()


@functools.cache
def templates() -> tuple[Template, ...]:
    """TEMPLATES processed customer-days of generated customers: some empty, some spilling."""
    from pipeline.generate import customer_profile, screen_time_key, screen_time_upload

    quotas = {
        "empty": _EMPTY_TEMPLATES,
        "spill": _SPILL_TEMPLATES,
        "plain": TEMPLATES - _EMPTY_TEMPLATES - _SPILL_TEMPLATES,
    }
    found: dict[str, list[Template]] = {kind: [] for kind in quotas}
    for number in range(20_000):
        if all(len(found[kind]) == quota for kind, quota in quotas.items()):
            break
        profile = customer_profile(SEED, number, END)
        day = END - dt.timedelta(days=number % 7)  # weekdays and weekends
        raw = screen_time_upload(SEED, profile, day)
        if raw is None:
            continue
        table, parquet = _processed(raw, profile.customer_id, day)
        hours = np.asarray(table["hour"].to_numpy(), dtype=np.int64)
        seconds = np.asarray(table["seconds"].to_numpy(), dtype=np.int64)
        spill = int(seconds[hours >= 24].sum())
        kind = "empty" if table.num_rows == 0 else "spill" if spill else "plain"
        if len(found[kind]) < quotas[kind]:
            found[kind].append(
                Template(
                    raw=raw,
                    raw_key=screen_time_key(profile.customer_id, day),
                    parquet=parquet,
                    table=table,
                    own_seconds=int(seconds[hours < 24].sum()),
                    spill_seconds=spill,
                )
            )
    if any(len(found[kind]) < quota for kind, quota in quotas.items()):
        raise RuntimeError(f"too few of some kind of customer-day: {quotas}")
    return tuple(found["plain"] + found["spill"] + found["empty"])


class _TemplateLake:
    """Just enough lake for ``contributions``: the templates' tables by key."""

    def __init__(self, tables: dict[str, pa.Table]) -> None:
        self._tables = tables

    def read_tables(self, keys: list[str], columns: list[str] | None = None) -> list[pa.Table]:
        return [self._tables[key] for key in keys]


@functools.cache
def _template_contributions() -> tuple[list[tuple[str, str]], np.ndarray, np.ndarray]:
    """Each template's summary rows, by the rollup's own code: ((dim, key) rows, what it adds
    to its own date, what it adds to the next date), the arrays shaped (TEMPLATES, rows,
    SUMMARY_COUNTS)."""
    from pipeline.rollup import contributions

    chosen = templates()
    lake = _TemplateLake({f"template/{i}": t.table for i, t in enumerate(chosen)})
    own_date = START.isoformat()
    versions = [
        (UploadRecord(f"t{i}", own_date, f"template/{i}", "", 0, 0, 0, float(i), ""), 1, float(i))
        for i in range(len(chosen))
    ]
    nothing_compacted = SimpleNamespace(get_many=lambda names: {})
    stores = SimpleNamespace(lake=lake, state=nothing_compacted)
    frame = contributions(cast(Stores, stores), versions)
    frame["next"] = frame["date"] != own_date
    sums = frame.groupby(["stamp", "next", "dim", "key"])[SUMMARY_COUNTS].sum()
    rows = sorted({(dim, key) for _, _, dim, key in sums.index})
    where = {row: n for n, row in enumerate(rows)}
    own = np.zeros((len(chosen), len(rows), len(SUMMARY_COUNTS)), dtype=np.int64)
    after = np.zeros_like(own)
    for (stamp, is_next, dim, key), values in sums.iterrows():
        (after if is_next else own)[int(stamp), where[(dim, key)]] += values.to_numpy()
    return rows, own, after


def summaries(counts: np.ndarray) -> dict[str, pd.DataFrame]:
    """Each date's fleet summary for these customer-day counts (shape (DAYS, TEMPLATES)), as the
    fold would leave it: what the day's uploads add to their own date plus what the previous
    day's add past midnight, rows with all counts zero dropped, sorted by (dim, key)."""
    rows, own, after = _template_contributions()
    found = {}
    for index in range(DAYS + 1):
        total = np.zeros(own.shape[1:], dtype=np.int64)
        if index < DAYS:
            total += np.tensordot(counts[index], own, axes=1)
        if index > 0:
            total += np.tensordot(counts[index - 1], after, axes=1)
        frame = pd.DataFrame(total, columns=SUMMARY_COUNTS)
        frame.insert(0, "dim", [dim for dim, _ in rows])
        frame.insert(1, "key", [key for _, key in rows])
        frame = frame.groupby(["dim", "key"], as_index=False)[SUMMARY_COUNTS].sum()
        frame = frame[(frame[SUMMARY_COUNTS] != 0).any(axis=1)]
        if len(frame):
            found[(START + dt.timedelta(days=index)).isoformat()] = frame
    return found


def expected_trend(number: int) -> dict[str, int]:
    """A customer's seconds per day with an upload, as CustomerTrendQuery must answer."""
    chosen = templates()
    days = plan(number)
    trend = {}
    for index, template in enumerate(days):
        if template is None:
            continue
        seconds = chosen[template].own_seconds
        previous = days[index - 1] if index else None
        if previous is not None:
            seconds += chosen[previous].spill_seconds
        trend[(START + dt.timedelta(days=index)).isoformat()] = seconds
    return trend


# ---- writing a synthetic lake ---------------------------------------------------------------


@dataclass
class Synthetic:
    customers: int
    settings: DataSettings
    customer_days: int
    written_s: float
    flushed_s: float
    db_bytes: int
    counts: np.ndarray = field(repr=False)
    phases: dict[str, float] = field(default_factory=dict)  # seconds per step of writing


def _epoch(day: dt.date) -> float:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()


def synthesize(
    folder: Path,
    customers: int,
    *,
    buckets: Iterable[int] = (VIEW_BUCKET,),
    fold: bool = True,
    flush: bool = True,
) -> Synthetic:
    """The processed form of ``customers`` x DAYS (see the module doc).

    ``buckets``: the buckets whose compacted parts are written, for every date.
    ``fold=False`` leaves out what the rollup writes (summaries, watermark),
    so a test can run the real rollup over the same index and compare.
    """
    from data_access import local
    from pipeline.catalog import APPS
    from pipeline.rollup import WATERMARK_SCREEN_TIME, _write_summary

    phases: dict[str, float] = {}
    started = last = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal last
        now = time.perf_counter()
        phases[name] = now - last
        last = now

    settings = DataSettings(lake_root=folder / "lake", state_db=folder / "state.sqlite")
    settings.lake_root.mkdir(parents=True, exist_ok=True)
    chosen = templates()
    counts = day_counts(customers)
    expected_rows = int(counts.sum())
    connection = sqlite3.connect(settings.state_db, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=OFF")  # a bulk load: no journal, no fsync
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("PRAGMA cache_size=-1000000")
        connection.execute("PRAGMA temp_store=MEMORY")
        for store in (
            local.SqliteCacheTable,
            local.SqliteMetadataIndex,
            local.SqliteStateStore,
            local.SqliteRecordStore,
            local.SqliteUploadQueue,
        ):
            connection.executescript(store.schema)
        # Strings are assembled from per-customer and per-(day, template) parts made once.
        connection.execute("CREATE TEMP TABLE days (d INTEGER PRIMARY KEY)")
        connection.executemany("INSERT INTO days VALUES (?)", [(d,) for d in range(DAYS)])
        connection.execute(
            "CREATE TEMP TABLE kinds (dt INTEGER PRIMARY KEY, date TEXT, object_tail TEXT,"
            " raw_tail TEXT, hash_tail TEXT, raw_bytes INTEGER, parquet_bytes INTEGER,"
            " rows INTEGER)"
        )
        kinds = []
        for d in range(DAYS):
            date = (START + dt.timedelta(days=d)).isoformat()
            for t, template in enumerate(chosen):
                tail = synthetic_hash(0, d, t)[8:]
                kinds.append(
                    (
                        d * TEMPLATES + t,
                        date,
                        f"{tail[:8]}.parquet",
                        f"{date}.json",
                        tail,
                        len(template.raw),
                        len(template.parquet),
                        template.table.num_rows,
                    )
                )
        connection.executemany("INSERT INTO kinds VALUES (?, ?, ?, ?, ?, ?, ?, ?)", kinds)
        connection.execute(
            "CREATE TEMP TABLE people AS WITH RECURSIVE c(n) AS"
            " (SELECT 0 UNION ALL SELECT n + 1 FROM c WHERE n < ?)"
            " SELECT n, cid, printf('%08x', n) AS chex,"
            f" '{layout.SCREEN_TIME_PARTS}' AS object_head,"
            f" '{layout.RAW_SCREEN_TIME}' || cid || '/' AS raw_head"
            " FROM (SELECT n, printf('c%07d', n) AS cid FROM c)",
            (customers - 1,),
        )
        phase("plan")
        connection.execute("BEGIN")
        # Rows come in primary-key order (customer, date): people is the outer loop. Upload
        # times rise in the same order, over the DAYS days after START, so the time index
        # grows at its end as rows are appended.
        inserted = connection.execute(
            "INSERT INTO uploads (customer_id, date, object_key, raw_key, raw_bytes,"
            " parquet_bytes, rows, uploaded_at, content_hash)"
            " SELECT p.cid, k.date,"
            " p.object_head || k.date || '/bucket=00/part-o' || p.chex || k.object_tail,"
            " p.raw_head || k.raw_tail, k.raw_bytes, k.parquet_bytes, k.rows,"
            f" :first + (p.n * {DAYS} + d.d) * :step, p.chex || k.hash_tail"
            " FROM people AS p CROSS JOIN days AS d CROSS JOIN kinds AS k"
            f" WHERE {_PRESENT_SQL} AND k.dt = d.d * {TEMPLATES} + {_TEMPLATE_SQL}",
            {"first": _epoch(START) + 86_400, "step": 86_400 / customers},
        ).rowcount
        if inserted != expected_rows:
            raise RuntimeError(f"SQL wrote {inserted} customer-days, numpy counts {expected_rows}")
        phase("index rows")
        # Per customer, from its first customer-day (one index seek each).
        connection.execute(
            "INSERT INTO records (kind, key, doc)"
            ' SELECT ?, p.cid, \'{"first_date":"\' ||'
            "  (SELECT u.date FROM uploads AS u WHERE u.customer_id = p.cid"
            "   ORDER BY u.date LIMIT 1) || '\"}'"
            " FROM people AS p",
            (layout.CUSTOMER_DIRECTORY,),
        )
        connection.executemany(
            "INSERT OR IGNORE INTO records (kind, key, doc) VALUES (?, ?, ?)",
            [
                (
                    APP_DIMENSION,
                    app.app_id,
                    json.dumps({"name": app.name, "category": app.category}, separators=(",", ":")),
                )
                for app in APPS
            ],
        )
        connection.execute("COMMIT")
        phase("customer directory, commit")
        newest = connection.execute("SELECT max(uploaded_at) FROM uploads").fetchone()[0]
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()
    if newest >= time.time():
        raise RuntimeError("synthetic uploads lie in the future: END is too recent")

    stores = build_stores(settings)
    stamp = f"{time.time():.6f}"
    stores.state.put(layout.VERSION_CUSTOMER_DIRECTORY, stamp)
    stores.state.put(layout.VERSION_LATEST_UPLOAD, stamp)
    if fold:
        for date, frame in summaries(counts).items():
            _write_summary(stores, date, frame, newest)
            stores.state.put(layout.screen_time_date_version(date), stamp)
        stores.state.put(WATERMARK_SCREEN_TIME, repr(newest))
        stores.state.put(layout.VERSION_SCREEN_TIME_ROLLUP, stamp)
    phase("summaries")
    for bucket in buckets:
        _write_compacted(stores, customers, newest, bucket)
    del stores
    phase("compacted parts")
    written = time.perf_counter() - started
    flushed = 0.0
    if flush:
        # What the bulk load left in the page cache goes to disk now, not during the
        # measurements (the first fsync after it would otherwise wait for gigabytes).
        started = time.perf_counter()
        os.sync()
        flushed = time.perf_counter() - started
        phases["flush"] = flushed
    return Synthetic(
        customers=customers,
        settings=settings,
        customer_days=expected_rows,
        written_s=written,
        flushed_s=flushed,
        db_bytes=settings.state_db.stat().st_size,
        counts=counts,
        phases={name: round(seconds, 2) for name, seconds in phases.items()},
    )


def in_bucket(customers: int, bucket: int) -> np.ndarray:
    """The customer numbers whose days live in ``bucket``, in customer_id order."""
    numbers = np.arange(customers, dtype=np.int64)
    found = [layout.screen_time_bucket(customer(int(n))) == bucket for n in numbers]
    return numbers[np.array(found, dtype=bool)]


def _write_compacted(stores: Stores, customers: int, newest: float, bucket: int) -> None:
    """Every date's compacted part of ``bucket`` with all its customers, and the manifests.

    What compaction leaves for a closed date: one part sorted by customer_id, the rows of
    each customer-day its template's, named by ``layout.screen_time_part_key``. Written
    straight to the lake folder (a fixture: no fsync).
    """
    from pipeline.process import PART_OPTIONS, PART_SCHEMA

    chosen = templates()
    rows = pa.concat_tables([t.table for t in chosen])
    lengths = np.array([t.table.num_rows for t in chosen], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    numbers = in_bucket(customers, bucket)
    ids = pa.array([customer(int(n)) for n in numbers], pa.string())
    step = 86_400 / customers
    for day in range(DAYS):
        date = (START + dt.timedelta(days=day)).isoformat()
        there = numbers[present(numbers, day)]
        picked = template_of(there, day)
        counts = lengths[picked]
        # Row i of customer k is template row offsets[picked[k]] + i.
        owner = np.repeat(np.arange(len(there)), counts)
        within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        taken = rows.take(pa.array(offsets[picked][owner] + within))
        position = np.searchsorted(numbers, there)[owner]
        hashes = pa.array(
            [synthetic_hash(int(n), day, int(t))[:16] for n, t in zip(there, picked, strict=True)]
        )
        table = pa.table(
            {
                "customer_id": ids.take(pa.array(position)),
                "content_hash": hashes.take(pa.array(owner)),
                "uploaded_at": pa.array(
                    _epoch(START) + 86_400 + (there[owner] * DAYS + day) * step
                ),
                **{name: taken[name] for name in taken.column_names},
            },
            schema=PART_SCHEMA,
        )
        key = layout.screen_time_part_key(date, bucket, f"c{customers:x}{day:02x}")
        path = stores.lake.root / key  # type: ignore[attr-defined]
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, **PART_OPTIONS)
        name = layout.screen_time_compaction(date)
        manifest = json.loads(stores.state.get(name) or "{}")
        parts = {**manifest.get("parts", {}), f"{bucket:02d}": key}
        stores.state.put(name, json.dumps({"at": newest + 1, "parts": parts}))


# ---- measuring one size ---------------------------------------------------------------------


def _release_free_memory() -> None:
    """Hand memory freed by earlier steps back to the OS (Python's collector, glibc's heap,
    Arrow's pool), so a step that needs memory raises RSS instead of reusing it unseen."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakRss:
    """RSS high-water of this process during a ``with`` block, above the RSS it began with.

    Freed memory is first handed back to the OS; then writing 5 to /proc/self/clear_refs
    resets the kernel's high-water mark (VmHWM) to the current RSS (Linux). ``extra_mib`` is
    None where that is not possible.
    """

    def __init__(self) -> None:
        self.start_mib: float | None = None
        self.peak_mib: float | None = None

    @staticmethod
    def _status(field_name: str) -> float:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) / 1024
        raise OSError(f"no {field_name} in /proc/self/status")

    def __enter__(self) -> PeakRss:
        _release_free_memory()
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            self.start_mib = self._status("VmRSS")
        except OSError:
            self.start_mib = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.start_mib is not None:
            self.peak_mib = self._status("VmHWM")

    @property
    def extra_mib(self) -> float | None:
        if self.start_mib is None or self.peak_mib is None:
            return None
        return max(0.0, self.peak_mib - self.start_mib)


def _clear_cache(settings: DataSettings) -> None:
    with sqlite3.connect(settings.state_db) as connection:
        connection.execute("DELETE FROM cache")
    connection.close()


def _fetch_all(
    service: DataService, queries: Sequence[Query], tier: str | None
) -> list[pd.DataFrame]:
    """The answers; each must come from ``tier`` (None: any)."""
    frames = []
    for query in queries:
        result = service.fetch(query)
        if tier is not None and result.provenance.tier != tier:
            raise RuntimeError(f"{query.kind} answered from {result.provenance.tier}, not {tier}")
        frames.append(result.data)
    return frames


def spread(customers: int, count: int, offset: int) -> list[int]:
    """``count`` customer numbers spread over the fleet, distinct for distinct offsets < 7."""
    return [min(customers - 1, customers * k // (count + 1) + offset) for k in range(1, count + 1)]


def view_customers(customers: int, repeat: int) -> list[int]:
    """Customers of VIEW_BUCKET, spread over the fleet: the bucket whose parts are written."""
    chosen = in_bucket(customers, VIEW_BUCKET)
    return [
        int(chosen[min(len(chosen) - 1, n * len(chosen) // customers)])
        for n in spread(customers, repeat + 1, 0)
    ]


def upload_customers(customers: int, repeat: int) -> list[int]:
    return spread(customers, repeat + 1, 3)


Samples = dict[str, float | None]


class _CountingLake:
    """The lake, counting the objects read (each ``read_where`` or table read is one)."""

    def __init__(self, lake: Any) -> None:
        self._lake = lake
        self.objects = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lake, name)

    def read_where(self, key: str, *args: Any, **kwargs: Any) -> Any:
        self.objects += 1
        return self._lake.read_where(key, *args, **kwargs)

    def read_tables(self, keys: list[str], *args: Any, **kwargs: Any) -> Any:
        self.objects += len(keys)
        return self._lake.read_tables(keys, *args, **kwargs)

    def read_bytes(self, key: str) -> bytes:
        self.objects += 1
        return self._lake.read_bytes(key)


class SizeBench:
    """The measurements on one synthetic lake, one sample per call.

    Timers cover only the product's work: clearing the cache table, writing the raw upload
    and checking answers happen outside them.
    """

    def __init__(self, synthetic: Synthetic, repeat: int) -> None:
        self.synthetic = synthetic
        self.customers = synthetic.customers
        self.settings = synthetic.settings
        self.stores = build_stores(self.settings)
        self.no_memo = self.settings.model_copy(update={"memo_seconds": 0})
        self.fleet: list[Query] = [
            FleetDailyQuery(START, END),
            FleetAppsQuery(START, END),
            FleetHoursQuery(START, END),
        ]
        self._viewed = iter(view_customers(self.customers, repeat))
        self._uploaders = iter(upload_customers(self.customers, repeat))
        self._warm: DataService | None = None
        self._memo: DataService | None = None
        self.uploaded: list[str] = []
        self.checks: list[str] = []
        daily = _fetch_all(DataService(self.stores, self.no_memo), self.fleet, "lake")[0]
        active = daily["active_customers"]
        low, high = int(active.min()), int(active.max())
        if len(daily) != DAYS or not 0.9 * self.customers <= low <= high <= self.customers:
            raise RuntimeError(f"fleet daily: {len(daily)} days, {low}-{high} active")
        self.checks.append(f"fleet view: {DAYS} days, {low:,}-{high:,} active customers a day")

    def fleet_cold(self) -> Samples:
        _clear_cache(self.settings)
        started = time.perf_counter()
        _fetch_all(DataService(self.stores, self.no_memo), self.fleet, "lake")
        return {"fleet_cold_ms": (time.perf_counter() - started) * 1e3}

    def fleet_warm(self) -> Samples:
        if self._warm is None:
            self._warm = DataService(self.stores, self.no_memo)
            _fetch_all(self._warm, self.fleet, None)
        started = time.perf_counter()
        _fetch_all(self._warm, self.fleet, "cache")
        return {"fleet_warm_ms": (time.perf_counter() - started) * 1e3}

    def fleet_memo(self) -> Samples:
        if self._memo is None:
            self._memo = DataService(self.stores, self.settings)
            _fetch_all(self._memo, self.fleet, None)
        started = time.perf_counter()
        _fetch_all(self._memo, self.fleet, "memory")
        return {"fleet_memo_ms": (time.perf_counter() - started) * 1e3}

    def customer_cold(self) -> Samples:
        """A different customer each call: the 30-day trend and one day by app and hour."""
        number = next(self._viewed)
        cid = customer(number)
        view = [
            CustomerTrendQuery(START, END, customer_id=cid),
            CustomerDayQuery(cid, END - dt.timedelta(days=3)),
        ]
        _clear_cache(self.settings)
        counting = _CountingLake(self.stores.lake)
        service = DataService(replace(self.stores, lake=counting), self.no_memo)
        started = time.perf_counter()
        [trend] = _fetch_all(service, view[:1], "lake")
        objects = counting.objects
        _fetch_all(service, view[1:], "lake")
        seconds = time.perf_counter() - started
        if dict(zip(trend["day"], trend["seconds"].astype(int), strict=True)) != expected_trend(
            number
        ):
            raise RuntimeError(f"{cid}: the trend does not match the customer's customer-days")
        return {"customer_cold_ms": seconds * 1e3, "customer_objects_per_day": objects / DAYS}

    def new_upload(self) -> Samples:
        """A real upload for NEW_DAY, for a different customer each call: raw -> queue, then
        drain and rollup timed, each with its own memory figure."""
        from pipeline.generate import customer_profile, screen_time_key, screen_time_upload
        from pipeline.process import drain
        from pipeline.rollup import rollup_screen_time

        number = next(self._uploaders)
        while True:  # a device-off day has no upload: take the next customer
            profile = customer_profile(SEED, number, NEW_DAY)
            body = screen_time_upload(SEED, profile, NEW_DAY)
            if body is not None:
                break
            number += 1
        key = screen_time_key(profile.customer_id, NEW_DAY)
        self.stores.lake.write_bytes(key, body)
        self.stores.queue.send([key])
        with PeakRss() as drain_memory:
            started = time.perf_counter()
            processed = drain(self.stores)
            drain_s = time.perf_counter() - started
        with PeakRss() as rollup_memory:
            started = time.perf_counter()
            folded = rollup_screen_time(self.stores, settle_seconds=0)
            rollup_s = time.perf_counter() - started
        if processed.processed != 1 or folded.uploads_read != 1:
            raise RuntimeError(
                f"{key}: {processed.processed} processed, {folded.uploads_read} folded"
            )
        self.uploaded.append(key)
        return {
            "upload_drain_ms": drain_s * 1e3,
            "upload_rollup_ms": rollup_s * 1e3,
            "upload_total_ms": (drain_s + rollup_s) * 1e3,
            "upload_drain_mib": drain_memory.extra_mib,
            "upload_rollup_mib": rollup_memory.extra_mib,
        }

    def idle_drain(self) -> Samples:
        from pipeline.process import drain

        started = time.perf_counter()
        handled = drain(self.stores).handled
        seconds = time.perf_counter() - started
        if handled:
            raise RuntimeError("an idle drain processed something")
        return {"idle_drain_ms": seconds * 1e3}

    def close(self) -> list[str]:
        """Check the new uploads reached their date's summary; the checks that passed."""
        table = self.stores.lake.read_tables([layout.screen_time_summary_key(NEW_DAY.isoformat())])
        summary = summary_frame(table[0])
        uploads = int(summary.loc[summary["dim"] == "day", "uploads"].sum())
        if uploads != len(self.uploaded):
            raise RuntimeError(
                f"{NEW_DAY} summary counts {uploads} uploads of {len(self.uploaded)}"
            )
        self.checks.append(
            f"customer view: every trend read matched its customer-days; new uploads: "
            f"{len(self.uploaded)} processed and counted in the {NEW_DAY} summary"
        )
        self._warm = self._memo = None
        del self.stores
        gc.collect()
        return self.checks


# Each step, how many samples it takes per round, and the memory figure of the round (the
# new upload measures its drain and rollup memory itself).
STEPS: tuple[tuple[str, int, str | None], ...] = (
    ("fleet_cold", 1, "fleet_cold_mib"),
    ("fleet_warm", 4, "fleet_warm_mib"),
    ("fleet_memo", 20, None),
    ("customer_cold", 1, "customer_cold_mib"),
    ("new_upload", 1, None),
    ("idle_drain", 40, "idle_drain_mib"),
)


def measure(benches: dict[int, SizeBench], repeat: int) -> dict[int, dict[str, float | None]]:
    """Rounds of every step on every size in turn, so a change in the machine's load while
    the section runs touches every size alike. Round 0 is an untimed warm-up. Times are the
    median of their samples; memory the largest peak of any round."""
    samples: dict[int, dict[str, list[float]]] = {size: {} for size in benches}
    memory: dict[int, dict[str, float | None]] = {size: {} for size in benches}
    for round_number in range(repeat + 1):
        for size, bench in benches.items():
            for name, count, memory_key in STEPS:
                with PeakRss() if memory_key else contextlib.nullcontext() as peak:
                    found = [getattr(bench, name)() for _ in range(count)]
                if not round_number:
                    continue
                for sample in found:
                    for key, value in sample.items():
                        if key.endswith("_mib"):
                            _keep_peak(memory[size], key, value)
                        else:
                            samples[size].setdefault(key, []).append(value or 0.0)
                if isinstance(peak, PeakRss) and memory_key:
                    _keep_peak(memory[size], memory_key, peak.extra_mib)
    return {
        size: {
            **{key: statistics.median(values) for key, values in samples[size].items()},
            **memory[size],
        }
        for size in benches
    }


def _keep_peak(peaks: dict[str, float | None], key: str, value: float | None) -> None:
    if value is None:
        peaks.setdefault(key, None)
    elif key not in peaks or (peaks[key] or 0.0) < value:
        peaks[key] = value


# ---- processing with 1 and 2 worker processes -----------------------------------------------


def _drain_parallel_in_helper(settings: DataSettings, workers: int, answer) -> None:
    """Runs in a spawned helper: its RUSAGE_CHILDREN covers exactly this pool's processes."""
    from pipeline.process import drain_parallel

    summary = drain_parallel(settings, workers=workers)
    answer.put(
        {
            "handled": summary.handled,
            "failed": summary.failed,
            "seconds": summary.seconds,
            # Linux reports KiB.
            "worker_peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        }
    )


def _drain_parallel(settings: DataSettings, workers: int) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    answer = context.Queue()
    helper = context.Process(target=_drain_parallel_in_helper, args=(settings, workers, answer))
    helper.start()
    try:
        result = answer.get(timeout=1800)
    finally:
        helper.join(timeout=60)
    return result


def _copy(source: Path, target: Path) -> DataSettings:
    shutil.copytree(source, target)
    return DataSettings(lake_root=target / "lake", state_db=target / "state.sqlite")


def measure_workers(folder: Path, *, customers: int, days: int, rounds: int = 3) -> dict[str, Any]:
    """uploads/s of drain_parallel with 1 and 2 workers, each run on a fresh copy of one
    generated lake, in ``rounds`` alternating rounds (1, 2, 1, 2, ...); medians."""
    from pipeline.generate import generate

    base = folder / "base"
    settings = DataSettings(lake_root=base / "lake", state_db=base / "state.sqlite")
    stores = build_stores(settings)
    generated = generate(
        stores.lake,
        queue=stores.queue,
        customers=customers,
        days=days,
        seed=SEED,
        end_date=END,
        hosts=0,
    )
    with sqlite3.connect(settings.state_db) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    del stores
    gc.collect()
    empty = folder / "empty"
    build_stores(DataSettings(lake_root=empty / "lake", state_db=empty / "state.sqlite"))
    seconds: dict[int, list[float]] = {1: [], 2: []}
    peak_mib = {1: 0.0, 2: 0.0}
    for round_number in range(rounds):
        for workers in (1, 2):
            copy = folder / f"w{workers}-{round_number}"
            run = _drain_parallel(_copy(base, copy), workers)
            shutil.rmtree(copy, ignore_errors=True)
            if run["handled"] != generated.uploads or run["failed"]:
                raise RuntimeError(
                    f"{workers} workers handled {run['handled']}, failed {run['failed']}"
                )
            seconds[workers].append(run["seconds"])
            peak_mib[workers] = max(peak_mib[workers], run["worker_peak_mib"])
    uploads = generated.uploads
    figures: dict[str, Any] = {"uploads": uploads, "rounds": rounds}
    rate, started_rate = {}, {}
    for workers in (1, 2):
        start_up = _drain_parallel(_copy(empty, folder / f"empty-{workers}"), workers)["seconds"]
        median = statistics.median(seconds[workers])
        rate[workers] = uploads / median
        # An estimate: the same run less the time the pool takes to start on an empty queue.
        started_rate[workers] = uploads / max(1e-9, median - start_up)
        figures |= {
            f"w{workers}_per_s": rate[workers],
            f"w{workers}_seconds": median,
            f"w{workers}_rounds_per_s": [uploads / s for s in seconds[workers]],
            f"w{workers}_start_s": start_up,
            f"w{workers}_per_s_started": started_rate[workers],
            f"w{workers}_worker_mib": peak_mib[workers],
        }
    figures["ratio"] = rate[2] / rate[1]
    figures["ratio_started"] = started_rate[2] / started_rate[1]
    shutil.rmtree(folder, ignore_errors=True)
    return figures


# ---- the section ----------------------------------------------------------------------------


_MEMORY = "RSS high-water above the step's start (freed memory handed back first)"


@dataclass(frozen=True)
class FigureSpec:
    key: str
    label: str
    unit: str
    method: str


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec(
        "fleet_cold_ms",
        "fleet 30-day view, cold",
        "ms",
        "3 fleet queries, fresh DataService, empty cache table: the Parquet tier",
    ),
    FigureSpec(
        "fleet_warm_ms",
        "fleet 30-day view, warm (cache table)",
        "ms",
        "the same 3 queries answered from the cache table",
    ),
    FigureSpec(
        "fleet_memo_ms",
        "fleet 30-day view, warm (memo)",
        "ms",
        "the same 3 queries answered from the in-process memo",
    ),
    FigureSpec(
        "customer_cold_ms",
        "customer 30-day view, cold",
        "ms",
        "CustomerTrendQuery + CustomerDayQuery, fresh DataService, empty cache table;"
        " every date compacted (one part per bucket), the customer's bucket written in full",
    ),
    FigureSpec(
        "customer_objects_per_day",
        "customer 30-day view: objects read a day",
        "",
        "Parquet objects the 30-day trend reads, divided by its 30 days",
    ),
    FigureSpec(
        "upload_drain_ms",
        "new upload: drain",
        "ms",
        "drain() of one queued real upload: validate, Parquet (fsync), index, versions",
    ),
    FigureSpec(
        "upload_rollup_ms",
        "new upload: rollup",
        "ms",
        "rollup_screen_time(settle 0) folding that upload into its date's summary",
    ),
    FigureSpec(
        "upload_total_ms", "new upload: drain + rollup", "ms", "median of the per-upload sums"
    ),
    FigureSpec("idle_drain_ms", "idle drain (nothing queued)", "ms", "drain() with an empty queue"),
    FigureSpec("fleet_cold_mib", "memory: fleet view cold", "MiB", _MEMORY),
    FigureSpec("fleet_warm_mib", "memory: fleet view warm", "MiB", _MEMORY),
    FigureSpec(
        "customer_cold_mib",
        "memory: customer view cold",
        "MiB",
        _MEMORY,
    ),
    FigureSpec("upload_drain_mib", "memory: new upload drain", "MiB", _MEMORY),
    FigureSpec(
        "upload_rollup_mib",
        "memory: new upload rollup",
        "MiB",
        _MEMORY,
    ),
    FigureSpec("idle_drain_mib", "memory: idle drain", "MiB", _MEMORY),
    FigureSpec("written_s", "synthesis: lake written", "s", "index, state, summaries, objects"),
    FigureSpec("db_gib", "synthesis: SQLite state file", "GiB", "index + state + records"),
)


@dataclass(frozen=True)
class Goal:
    text: str
    passed: bool
    measured: str


def goals(by_size: dict[int, dict[str, float | None]], workers: dict[str, Any]) -> list[Goal]:
    """The scale goals, checked (not asserted) on the figures."""
    small, large = by_size.get(GOAL_SMALL, {}), by_size.get(GOAL_LARGE, {})
    found = []

    def ratio(key: str) -> float | None:
        if small.get(key) and large.get(key) is not None:
            return large[key] / small[key]  # type: ignore[operator]
        return None

    cold = ratio(GOAL_FIGURES[0])
    cold_ms = large.get(GOAL_FIGURES[0])
    found.append(
        Goal(
            "fleet view cold at 1M: <= 1.5x its 10k time and < 300 ms",
            cold is not None and cold_ms is not None and cold <= 1.5 and cold_ms < 300,
            "n/a" if cold is None else f"{cold:.2f}x, {cold_ms:.0f} ms",
        )
    )
    for key, text in zip(
        GOAL_FIGURES[1:],
        (
            "one new upload (drain + rollup) at 1M: <= 1.5x its 10k cost",
            "idle drain at 1M: <= 1.5x its 10k cost",
        ),
        strict=True,
    ):
        value = ratio(key)
        found.append(
            Goal(
                text,
                value is not None and value <= 1.5,
                "n/a" if value is None else f"{value:.2f}x",
            )
        )
    view = ratio("customer_cold_ms")
    objects = large.get("customer_objects_per_day")
    found.append(
        Goal(
            "customer 30-day view at 1M: <= 1.5x its 10k time, <= 2 objects read a day",
            view is not None and objects is not None and view <= 1.5 and objects <= 2,
            "n/a" if view is None or objects is None else f"{view:.2f}x, {objects:.2f} a day",
        )
    )
    value = workers.get("ratio")
    found.append(
        Goal(
            "2 workers: >= 1.7x the uploads/s of 1 worker",
            value is not None and value >= 1.7,
            "n/a" if value is None else f"{value:.2f}x",
        )
    )
    return found


def _size_label(size: int) -> str:
    for unit, name in ((1_000_000, "M"), (1_000, "k")):
        if size >= unit and size % unit == 0:
            return f"{size // unit}{name}"
    return f"{size:,}"


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms" and value < 1:
        return f"{value:.3f} ms"
    if unit in ("MiB", "GiB", "s") and value < 10:
        return f"{value:.1f} {unit}"
    return f"{value:,.0f} {unit}"


def growth_table(
    by_size: dict[int, dict[str, float | None]],
    workers: dict[str, Any],
    found: list[Goal],
    skipped: dict[int, str] | None = None,
) -> str:
    """Each figure at each size and the ratio largest/smallest, then the goals."""
    sizes = sorted(by_size)
    if not sizes:
        return f"scale: no size measured ({skipped})"
    smallest, largest = sizes[0], sizes[-1]
    header = [
        "figure",
        *(f"{size:,}" for size in sizes),
        f"{_size_label(largest)}/{_size_label(smallest)}",
    ]
    rows = [header]
    for spec in FIGURES:
        values = [by_size[size].get(spec.key) for size in sizes]
        first, last = values[0], values[-1]
        # A few MiB either way is the allocator (a heap arena used for the first time).
        noise = spec.unit == "MiB" and max(first or 0.0, last or 0.0) < MEMORY_NOISE_MIB
        ratio = "-" if first in (None, 0) or last is None or noise else f"{last / first:.2f}x"
        rows.append([spec.label, *(_value(v, spec.unit) for v in values), ratio])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        f"scale: growth with the number of customers ({DAYS} days of customer-days each; "
        "times are medians, memory the RSS high-water above the step's start, its ratio "
        f"left out under {MEMORY_NOISE_MIB:g} MiB; see bench/scale.py)"
    ]
    for n, row in enumerate(rows):
        cells = [
            row[0].ljust(widths[0]),
            *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)),
        ]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    for size, why in (skipped or {}).items():
        lines.append(f"{size:,} customers skipped: {why}")
    if workers:
        lines.append(
            f"processing ({workers['uploads']:,.0f} generated uploads, drain_parallel): "
            f"1 worker {workers['w1_per_s']:.0f}/s, 2 workers {workers['w2_per_s']:.0f}/s "
            f"= {workers['ratio']:.2f}x, process start-up included (median of "
            f"{workers['rounds']} alternating rounds: "
            + " / ".join(f"{r:.0f}" for r in workers["w1_rounds_per_s"])
            + " vs "
            + " / ".join(f"{r:.0f}" for r in workers["w2_rounds_per_s"])
            + ")"
        )
        lines.append(
            f"  less the start-up on an empty queue ({workers['w1_start_s']:.1f} s / "
            f"{workers['w2_start_s']:.1f} s): {workers['w1_per_s_started']:.0f}/s vs "
            f"{workers['w2_per_s_started']:.0f}/s = {workers['ratio_started']:.2f}x; "
            f"worker peak RSS {workers['w1_worker_mib']:.0f} / "
            f"{workers['w2_worker_mib']:.0f} MiB"
        )
    lines.append("goals (checked, not asserted):")
    for goal in found:
        lines.append(f"  {'PASS' if goal.passed else 'FAIL'}  {goal.text}: {goal.measured}")
    return "\n".join(lines)


def _measure_group(
    folder: Path, sizes: Sequence[int], repeat: int, skipped: dict[int, str]
) -> tuple[dict[int, Synthetic], dict[int, dict[str, float | None]], dict[int, list[str]]]:
    """Synthesize these sizes, measure them in interleaved rounds, delete them."""
    synthetic: dict[int, Synthetic] = {}
    benches: dict[int, SizeBench] = {}
    try:
        for customers in sizes:
            need = customers * DAYS * BYTES_PER_CUSTOMER_DAY * 1.1 + 2**30
            free = shutil.disk_usage(folder).free
            if need > free:
                skipped[customers] = (
                    f"needs ~{need / 2**30:.0f} GiB of disk, {free / 2**30:.0f} GiB free"
                )
                continue
            lake = synthesize(folder / f"n{customers}", customers)
            print(
                f"   {SECTION}: {customers:,} customers, {lake.customer_days:,} customer-days "
                f"written in {lake.written_s:.0f} s ({lake.db_bytes / 2**30:.2f} GiB), flushed "
                f"to disk in {lake.flushed_s:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            synthetic[customers] = lake
            benches[customers] = SizeBench(lake, repeat)
        by_size = measure(benches, repeat)
        checks = {size: bench.close() for size, bench in benches.items()}
    finally:
        benches.clear()
        gc.collect()
        for customers in synthetic:  # gigabytes at 1M: free them before the next section
            shutil.rmtree(folder / f"n{customers}", ignore_errors=True)
    return synthetic, by_size, checks


def scale(report: Report, folder: Path, *, full: bool) -> None:
    repeat = 9 if full else 7
    folder.mkdir(parents=True, exist_ok=True)
    synthetic: dict[int, Synthetic] = {}
    by_size: dict[int, dict[str, float | None]] = {}
    checks: dict[int, list[str]] = {}
    skipped: dict[int, str] = {}
    # Processing with 1 and 2 workers does not depend on the fleet's size: measured first, on
    # a quiet disk (deleting the large lakes afterwards keeps the kernel busy for a while).
    workers = measure_workers(folder / "workers", customers=1200 if full else 600, days=10)
    # The quick sizes' lakes are on disk together (~13 GiB) and measured in turn; 5M (~60 GiB)
    # only fits alone, so --full measures it after them.
    for group in (QUICK_SIZES, FULL_SIZES[len(QUICK_SIZES) :]) if full else (QUICK_SIZES,):
        lakes, figures, passed = _measure_group(folder, group, repeat, skipped)
        synthetic.update(lakes)
        by_size.update(figures)
        checks.update(passed)
    for customers, lake in synthetic.items():
        by_size[customers]["written_s"] = lake.written_s
        by_size[customers]["db_gib"] = lake.db_bytes / 2**30
        for spec in FIGURES:
            if spec.key in ("written_s", "db_gib"):
                continue
            note = spec.method
            if spec.key == "fleet_cold_ms":
                note += (
                    f"; {lake.customer_days:,} customer-days indexed, lake written in "
                    f"{lake.written_s:.0f} s"
                )
            report.add(
                SECTION,
                f"{spec.label} @ {customers:,} customers",
                by_size[customers].get(spec.key),
                unit=spec.unit,
                note=note,
            )
    for customers, why in skipped.items():
        report.add(SECTION, f"{customers:,} customers", None, note=f"skipped: {why}")

    found = goals(by_size, workers)
    report.add(
        SECTION,
        "uploads processed per second, 1 worker",
        workers["w1_per_s"],
        unit="/s",
        note=f"drain_parallel(workers=1) of {workers['uploads']:,.0f} generated uploads, "
        f"process start-up included (alone: {workers['w1_start_s']:.1f} s); worker peak RSS "
        f"{workers['w1_worker_mib']:.0f} MiB",
    )
    report.add(
        SECTION,
        "uploads processed per second, 2 workers",
        workers["w2_per_s"],
        unit="/s",
        ratio=workers["ratio"],
        ratio_to="1 worker",
        target=">= 1.7x",
        note=f"{'PASS' if found[-1].passed else 'FAIL'}; same uploads, a fresh copy of the "
        f"lake; start-up alone {workers['w2_start_s']:.1f} s (less start-up: "
        f"{workers['ratio_started']:.2f}x); worker peak RSS {workers['w2_worker_mib']:.0f} MiB",
    )
    labels = {spec.key: spec.label for spec in FIGURES}
    for key, goal in zip(GOAL_FIGURES, found, strict=False):
        small = by_size.get(GOAL_SMALL, {}).get(key)
        large = by_size.get(GOAL_LARGE, {}).get(key)
        report.add(
            SECTION,
            f"growth 10k -> 1M customers: {labels[key]}",
            large / small if small and large is not None else None,
            unit="x",
            ratio=GOAL_LARGE / GOAL_SMALL,
            ratio_to="customers grew (x)",
            target=goal.text.split(": ", 1)[1],
            note=f"{'PASS' if goal.passed else 'FAIL'} ({goal.measured})",
        )
    report.tables[SECTION] = growth_table(by_size, workers, found, skipped)
    report.details[SECTION] = {
        "sizes": sorted(by_size),
        "skipped": {str(size): why for size, why in skipped.items()},
        "days": DAYS,
        "templates": TEMPLATES,
        "rounds": repeat,
        "interleaved": [
            list(QUICK_SIZES),
            *([list(FULL_SIZES[len(QUICK_SIZES) :])] if full else []),
        ],
        "figures": {
            spec.key: {
                "label": spec.label,
                "unit": spec.unit,
                "method": spec.method,
                "by_customers": {str(size): by_size[size].get(spec.key) for size in by_size},
            }
            for spec in FIGURES
        },
        "synthesis": {
            str(size): {
                "customer_days": lake.customer_days,
                "db_bytes": lake.db_bytes,
                "seconds": lake.phases,
            }
            for size, lake in synthetic.items()
        },
        "workers": workers,
        "goals": [{"goal": g.text, "passed": g.passed, "measured": g.measured} for g in found],
        "checks": {str(size): lines for size, lines in checks.items()},
    }
