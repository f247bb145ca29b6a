"""Compaction: a closed date's parts become one part per bucket, sorted by customer.

Workers write one small part per (date, bucket) per batch. Once a date is closed (no
longer today or yesterday in UTC, when devices upload it), :func:`compact_date` merges
each bucket's parts into one object: far fewer, larger objects (large enough for the
storage tiers), with each customer-day exactly once in its current version.

What compaction keeps per customer-day: the version the index names; when the index no
longer holds the day, the newest. Rows of versions noted as superseded (replaced, or lost a
race) are dropped, but only once the fold has subtracted them: a bucket holding a replaced
version the summaries still count waits for the next run.

Readers never wait: the compacted part and the date's manifest (state
``layout.screen_time_compaction``) are written before the merged parts are deleted, and a
reader that misses a part falls back to the compacted one (``queries.read_customer_days``).
The fold notes each date it folds as pending; compaction runs under the fold's lease,
right after it, on the pending dates that have closed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_access import layout
from data_access.queries import compaction_manifests
from data_access.stores import Stores
from pipeline.process import PART_OPTIONS, PART_SCHEMA, as_part

log = logging.getLogger(__name__)

PENDING_DATES = "compaction:screen_time:pending"
# Devices upload a day's usage the next day: a date is closed once it is two days old.
CLOSED_AFTER_DAYS = 2
_SUPERSEDED_SCAN = 100_000


@dataclass
class CompactionSummary:
    dates: list[str] = field(default_factory=list)  # dates whose every bucket is compacted
    deferred: list[str] = field(default_factory=list)  # dates with a bucket left for later
    parts_read: int = 0
    parts_written: int = 0
    rows_dropped: int = 0  # rows of superseded or duplicate versions
    index_pruned: int = 0  # index records past their retention, deleted


def note_pending(stores: Stores, dates: set[str]) -> None:
    """Remember dates that gained versions, for compaction once they close."""
    if not dates:
        return
    pending = set(json.loads(stores.state.get(PENDING_DATES) or "[]"))
    if not dates <= pending:
        stores.state.put(PENDING_DATES, json.dumps(sorted(pending | dates)))


def closed_before(now: float) -> str:
    """The first date not yet closed at ``now``: compaction takes dates before it."""
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    return (today - dt.timedelta(days=CLOSED_AFTER_DAYS - 1)).isoformat()


def compact_pending(stores: Stores, *, now: float | None = None) -> CompactionSummary:
    """Compact every pending date that has closed; call it under the fold's lease."""
    summary = CompactionSummary()
    pending = set(json.loads(stores.state.get(PENDING_DATES) or "[]"))
    limit = closed_before(time.time() if now is None else now)
    done = set()
    for date in sorted(d for d in pending if d < limit):
        if compact_date(stores, date, summary):
            done.add(date)
    if done:
        # Only the lease holder changes the set (the fold notes dates, then this runs).
        stores.state.put(PENDING_DATES, json.dumps(sorted(pending - done)))
    summary.index_pruned = stores.index.prune_expired(time.time() if now is None else now)
    return summary


def _superseded(stores: Stores, date: str) -> dict[tuple[str, str], tuple[str, float]]:
    """(customer, row hash) -> (record name, noted at), of ``date``'s superseded versions."""
    noted = {}
    for name, doc in stores.records.scan(layout.SUPERSEDED, limit=_SUPERSEDED_SCAN):
        customer_id, noted_date, content_hash = name.split("/")
        if noted_date == date:
            noted[(customer_id, layout.row_hash(content_hash))] = (name, float(doc.get("at", 0)))
    return noted


def compact_date(stores: Stores, date: str, summary: CompactionSummary | None = None) -> bool:
    """Merge each bucket of ``date`` into one part; False when a bucket had to wait."""
    summary = summary if summary is not None else CompactionSummary()
    name = layout.screen_time_compaction(date)
    manifest = compaction_manifests(stores, [date]).get(date) or {"at": 0, "parts": {}}
    superseded = _superseded(stores, date)
    # Noted after the replacing record was committed: once the fold is past the note, it
    # has subtracted the replaced version and nothing needs its rows.
    watermark = float(stores.state.get(layout.SCREEN_TIME_FOLD_WATERMARK) or 0)
    waiting = {customer_id for (customer_id, _), (_, at) in superseded.items() if at > watermark}
    # Before listing: every version committed before this moment is in a part listed below.
    started = time.time()
    merged: list[str] = []
    dropped: list[str] = []
    complete = True
    for bucket in range(layout.SCREEN_TIME_BUCKETS):
        label = f"{bucket:02d}"
        keys = [i.key for i in stores.lake.list(layout.screen_time_bucket_prefix(date, bucket))]
        if not keys or keys == [manifest["parts"].get(label)]:
            continue
        if any(layout.screen_time_bucket(c) == bucket for c in waiting):
            complete = False  # the fold still counts a version this would drop
            continue
        table, noted, content = _merge(stores, date, keys, superseded, summary)
        key = layout.screen_time_part_key(date, bucket, content)
        stores.lake.write_table(key, table, **PART_OPTIONS)
        summary.parts_written += 1
        manifest["parts"][label] = key
        merged += [k for k in keys if k != key]
        dropped += noted
    if merged:
        manifest["at"] = started
        stores.state.put(name, json.dumps(manifest, sort_keys=True))
        # After the manifest: a reader that misses one of these finds the compacted part.
        for key in merged:
            stores.lake.delete(key)
        for record_name in dropped:
            stores.records.delete(layout.SUPERSEDED, record_name)
    (summary.dates if complete else summary.deferred).append(date)
    return complete


def _merge(
    stores: Stores,
    date: str,
    keys: list[str],
    superseded: dict[tuple[str, str], tuple[str, float]],
    summary: CompactionSummary,
) -> tuple[pa.Table, list[str], str]:
    """One bucket's rows with each customer-day once, the superseded notes it settled, and
    a name for the result derived from which versions it holds."""
    tables = []
    for number, table in enumerate(stores.lake.read_tables(keys)):
        if table is not None and table.num_rows:
            part = pa.array(np.full(table.num_rows, number, dtype=np.int32))
            table = as_part(table)
            tables.append(table.append_column("part", part))
    summary.parts_read += len(keys)
    if not tables:
        return PART_SCHEMA.empty_table(), [], "empty"
    rows = pa.concat_tables(tables)
    versions = (
        rows.group_by(["customer_id", "content_hash"])
        .aggregate([("part", "min"), ("uploaded_at", "max")])
        .to_pandas()
    )
    noted = [
        superseded[pair][0]
        for pair in zip(versions["customer_id"], versions["content_hash"], strict=True)
        if pair in superseded
    ]
    versions = versions[
        [
            pair not in superseded
            for pair in zip(versions["customer_id"], versions["content_hash"], strict=True)
        ]
    ]
    # Several versions of one customer-day: the index says which is current.
    several = versions[versions.duplicated("customer_id", keep=False)]
    current = {}
    for customer_id in several["customer_id"].unique():
        record = stores.index.get(customer_id, date)
        if record is not None:
            current[customer_id] = layout.row_hash(record.content_hash)
    # Prefer the indexed version; when the index names one not here (committed after the
    # listing), keep the newest here: the fold may still need it, the next run drops it.
    versions["preferred"] = [
        current.get(c) == h
        for c, h in zip(versions["customer_id"], versions["content_hash"], strict=True)
    ]
    keep = versions.sort_values(["preferred", "uploaded_at_max"]).drop_duplicates(
        "customer_id", keep="last"
    )
    keep = keep.sort_values("customer_id")
    chosen = pa.table(
        {
            "customer_id": pa.array(keep["customer_id"], pa.string()),
            "content_hash": pa.array(keep["content_hash"], pa.string()),
            "part": pa.array(keep["part_min"], pa.int32()),
        }
    )
    content = hashlib.sha256(
        "".join(
            f"{c}:{h};" for c, h in zip(keep["customer_id"], keep["content_hash"], strict=True)
        ).encode()
    ).hexdigest()[:16]
    # A filter rather than a join: Arrow joins carry no list columns (session_spans).
    kept = rows.filter(pc.is_in(_version_keys(rows), value_set=_version_keys(chosen)))
    summary.rows_dropped += rows.num_rows - kept.num_rows
    order = pc.sort_indices(
        kept, [("customer_id", "ascending"), ("hour", "ascending"), ("app_id", "ascending")]
    )
    return kept.take(order).select(PART_SCHEMA.names).cast(PART_SCHEMA), noted, content


def _version_keys(table: pa.Table) -> pa.Array:
    """customer_id, content_hash and part of each row as one string."""
    part = pc.cast(table["part"], pa.string())
    return pc.binary_join_element_wise(table["customer_id"], table["content_hash"], part, "/")
