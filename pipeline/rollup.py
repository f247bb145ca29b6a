"""Per-date rollups for the fleet and business views.

Screen time is additive: the fold reads only what the index says is new since its watermark,
subtracts the contribution of the version each customer-day had in the summaries (a
corrected re-upload) and adds the new one. A date's summary holds O(apps + hours) rows,
whatever the number of customers, and records the upload time it is folded through, so a
fold that dies half-way and runs again adds nothing twice. Business stats recompute only
the days whose event partitions changed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import pyarrow as pa

from data_access import layout
from data_access.queries import SUMMARY_COUNTS, read_customer_days, summary_frame
from data_access.stores import Stores, UploadRecord
from pipeline import compact
from pipeline.process import parse_held

PARQUET = {"compression": "zstd", "use_dictionary": True}
WATERMARK_SCREEN_TIME = layout.SCREEN_TIME_FOLD_WATERMARK
WATERMARK_BUSINESS = "rollup:business:watermark"
# While uploads are in flight, those committed less than this long ago wait for the next
# fold: a worker stamps its record just before the conditional write, and a write that lands
# after the fold has read past its stamp would otherwise be skipped for good.
SETTLE_SECONDS = 30.0
LEASE_KIND = "lease"
_FOLDED_THROUGH = b"folded_through"
_COUNTS = ["seconds", "sessions", "pickups", "notifications"]


@dataclass
class RollupSummary:
    screen_time_dates: list[str] = field(default_factory=list)
    business_dates: list[str] = field(default_factory=list)
    uploads_read: int = 0
    busy: bool = False  # another fold holds the lease
    compaction: compact.CompactionSummary = field(default_factory=compact.CompactionSummary)


def _read_frame(stores: Stores, key: str) -> pd.DataFrame | None:
    table = stores.lake.read_table([key])
    return table.to_pandas() if table.num_columns else None


def _write(stores: Stores, key: str, frame: pd.DataFrame) -> None:
    stores.lake.write_table(key, pa.Table.from_pandas(frame, preserve_index=False), **PARQUET)


@contextlib.contextmanager
def lease(stores: Stores, name: str, seconds: float) -> Iterator[bool]:
    """Yield True while this caller alone holds ``name``; an expired lease is taken over."""
    now = time.time()
    held = stores.records.put_new(LEASE_KIND, name, {"until": now + seconds})
    if not held:
        current = stores.records.get(LEASE_KIND, name)
        if current is None or current.get("until", 0) < now:
            stores.records.delete(LEASE_KIND, name)
            held = stores.records.put_new(LEASE_KIND, name, {"until": now + seconds})
    try:
        yield held
    finally:
        if held:
            stores.records.delete(LEASE_KIND, name)


def contributions(stores: Stores, versions: list[tuple[UploadRecord, int, float]]) -> pd.DataFrame:
    """What each (customer-day version, sign, folded-at) adds to the per-date summaries.

    Seconds and counts land on the calendar day (hours 24-47 are the next day); an upload
    counts once, on its own date, as an upload and, with any usage, as an active customer,
    and once per app it used. Each upload key is one customer-day, so all of it adds up.
    One frame for the whole batch, grouped once: the cost per upload is a few rows of work.
    """
    tables = read_customer_days(stores, [record for record, _, _ in versions])
    meta = pd.DataFrame(
        {
            "date": [record.date for record, _, _ in versions],
            "next": [
                (dt.date.fromisoformat(record.date) + dt.timedelta(days=1)).isoformat()
                for record, _, _ in versions
            ],
            "sign": np.array([sign for _, sign, _ in versions], dtype=np.int64),
            "stamp": [stamp for _, _, stamp in versions],
        }
    )
    found = [
        table.select(["hour", "app_id", *_COUNTS]).append_column(
            "uid", pa.array(np.full(table.num_rows, uid, dtype=np.int64))
        )
        for uid, table in enumerate(tables)
        if table is not None and table.num_rows
    ]
    columns = ["date", "stamp", "dim", "key", *SUMMARY_COUNTS]
    if found:
        rows = pa.concat_tables(found, promote_options="permissive").to_pandas()
        uid = rows["uid"].to_numpy()
        hours = rows["hour"].to_numpy().astype(np.int64)
        sign = meta["sign"].to_numpy()[uid]
        rows = pd.DataFrame(
            {
                "uid": uid,
                "date": np.where(
                    hours >= 24, meta["next"].to_numpy()[uid], meta["date"].to_numpy()[uid]
                ),
                "stamp": meta["stamp"].to_numpy()[uid],
                "hour": hours % 24,
                "app_id": rows["app_id"].to_numpy(),
                **{c: rows[c].to_numpy().astype(np.int64) * sign for c in _COUNTS},
            }
        )
        seconds = rows.groupby("uid")["seconds"].sum()
        used = rows.groupby(["uid", "app_id"], as_index=False)["seconds"].sum()
        used = used[used["seconds"] != 0]
        parts = [
            rows.groupby(["date", "stamp", "app_id"], as_index=False)[_COUNTS]
            .sum()
            .rename(columns={"app_id": "key"})
            .assign(dim="app"),
            pd.DataFrame(
                {
                    "date": meta["date"].to_numpy()[used["uid"]],
                    "stamp": meta["stamp"].to_numpy()[used["uid"]],
                    "dim": "app",
                    "key": used["app_id"].to_numpy(),
                    "customers": meta["sign"].to_numpy()[used["uid"]],
                }
            ),
            rows.groupby(["date", "stamp", "hour"], as_index=False)[["seconds"]]
            .sum()
            .assign(dim="hour", key=lambda f: f["hour"].map("{:02d}".format))
            .drop(columns="hour"),
            rows.groupby(["date", "stamp"], as_index=False)[_COUNTS]
            .sum()
            .assign(dim="day", key=""),
        ]
    else:
        parts, seconds = [], pd.Series(dtype="int64")
    # Every version counts as an upload on its own date, even one with no rows.
    active = np.zeros(len(meta), dtype=bool)
    active[seconds.index.to_numpy()] = seconds.to_numpy() != 0
    parts.append(
        meta[["date", "stamp"]].assign(
            dim="day", key="", uploads=meta["sign"], customers=meta["sign"] * active
        )
    )
    frame = pd.concat(parts, ignore_index=True)
    for column in SUMMARY_COUNTS:
        frame[column] = frame.get(column, 0)
    frame[SUMMARY_COUNTS] = frame[SUMMARY_COUNTS].fillna(0).astype("int64")
    return frame[columns]


def _read_summary(stores: Stores, date: str) -> tuple[pd.DataFrame, float]:
    table = stores.lake.read_tables([layout.screen_time_summary_key(date)])[0]
    if table is None:
        return summary_frame(None), 0.0
    through = float((table.schema.metadata or {}).get(_FOLDED_THROUGH, b"0"))
    return summary_frame(table), through


def _write_summary(stores: Stores, date: str, frame: pd.DataFrame, through: float) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({_FOLDED_THROUGH: repr(through).encode()})
    stores.lake.write_table(layout.screen_time_summary_key(date), table, **PARQUET)


def fold_uploads(
    stores: Stores, records: list[UploadRecord], watermark: float | None = None
) -> list[str]:
    """Fold these index records (oldest first) into the summaries; the dates that changed.

    ``watermark``: what the summaries are folded through (the fold's state by default). A
    record at or before it is folded already. One that replaced a version the summaries
    hold subtracts it: the newest of its ``held`` versions at or before the watermark (a
    version committed after it was replaced before any fold saw it, so it never counted).
    """
    if watermark is None:
        watermark = float(stores.state.get(WATERMARK_SCREEN_TIME) or 0)
    versions: list[tuple[UploadRecord, int, float]] = []
    for record in records:
        if record.uploaded_at <= watermark:
            continue  # folded already
        versions.append((record, 1, record.uploaded_at))
        held = next((h for h, at in parse_held(record.held) if at <= watermark), None)
        if held is not None:
            # Where the replaced version lives is found by its hash (object_key="").
            old = replace(record, object_key="", content_hash=held)
            versions.append((old, -1, record.uploaded_at))
    changed: list[str] = []
    if versions:
        delta = contributions(stores, versions)
        through = records[-1].uploaded_at
        for date, part in delta.groupby("date"):
            summary, folded_through = _read_summary(stores, str(date))
            part = part[part["stamp"] > folded_through]
            if part.empty:
                continue
            merged = (
                pd.concat([summary, part[summary.columns]], ignore_index=True)
                .groupby(["dim", "key"], as_index=False)[SUMMARY_COUNTS]
                .sum()
            )
            merged = merged[(merged[SUMMARY_COUNTS] != 0).any(axis=1)]
            _write_summary(stores, str(date), merged, through)
            changed.append(str(date))
    stamp = f"{time.time():.6f}"
    for date in changed:  # only the dates whose numbers changed get a new version
        stores.state.put(layout.screen_time_date_version(date), stamp)
    return sorted(changed)


def rollup_screen_time(
    stores: Stores, *, batch: int = 10_000, settle_seconds: float = SETTLE_SECONDS
) -> RollupSummary:
    """Fold every upload committed since the watermark; cost follows what is new."""
    summary = RollupSummary()
    with lease(stores, "rollup:screen_time", seconds=900) as held:
        if not held:
            summary.busy = True
            return summary
        watermark = float(stores.state.get(WATERMARK_SCREEN_TIME) or 0)
        # With nothing queued or in flight, no commit can still land behind ``now``.
        now = time.time()
        until = now if stores.queue.depth() == 0 else now - settle_seconds
        while True:
            found = stores.index.uploaded_since(watermark, limit=batch)
            records = [r for r in found if r.uploaded_at <= until]
            if not records:
                break
            for date in fold_uploads(stores, records, watermark):
                if date not in summary.screen_time_dates:
                    summary.screen_time_dates.append(date)
            summary.uploads_read += len(records)
            compact.note_pending(stores, {r.date for r in records})
            watermark = records[-1].uploaded_at
            stores.state.put(WATERMARK_SCREEN_TIME, repr(watermark))
            if len(found) < batch:
                break
        # Under the same lease: no fold runs while compaction drops replaced versions.
        summary.compaction = compact.compact_pending(stores)
    if summary.screen_time_dates:
        summary.screen_time_dates.sort()
        stores.state.put(layout.VERSION_SCREEN_TIME_ROLLUP, f"{time.time():.6f}")
    return summary


# ---- business --------------------------------------------------------------------------------


def _changed_event_dates(stores: Stores, since: float) -> tuple[list[str], float]:
    changed, newest = set(), since
    for info in stores.lake.list(layout.PROCESSED_EVENTS):
        if info.modified > since:
            part = next((p for p in info.key.split("/") if p.startswith("date=")), None)
            if part:
                changed.add(part.removeprefix("date="))
                newest = max(newest, info.modified)
    return sorted(changed), newest


def business_day(stores: Stores, date: str) -> dict[str, pd.DataFrame]:
    """Recompute one day's business tables from the processed events."""

    def events(event_type: str, columns: list[str]) -> pd.DataFrame:
        keys = [layout.events_key(event_type, date, hour) for hour in range(24)]
        table = stores.lake.read_table(keys, columns)
        if table.num_columns == 0:
            return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
        return table.to_pandas()

    purchases = events(
        "purchase",
        ["order_id", "user_id", "product_id", "product_name", "category", "quantity", "amount"],
    )
    pageviews = events("pageview", ["user_id"])
    custom = events("custom", ["user_id"])
    purchases["amount"] = purchases["amount"].astype("float64")
    purchases["quantity"] = purchases["quantity"].astype("int64")

    users = pd.Series(
        sorted(set(pageviews["user_id"]) | set(purchases["user_id"]) | set(custom["user_id"])),
        dtype="object",
    )
    stats = pd.DataFrame(
        [
            {
                "day": date,
                "revenue": round(float(purchases["amount"].sum()), 2),
                "orders": int(purchases["order_id"].nunique()),
                "visitors": int(pageviews["user_id"].nunique()),
                "buyers": int(purchases["user_id"].nunique()),
                "dau": len(users),
                "pageviews": len(pageviews),
            }
        ]
    )
    products = purchases.groupby(["product_id", "product_name", "category"], as_index=False).agg(
        revenue=("amount", "sum"), orders=("order_id", "nunique"), quantity=("quantity", "sum")
    )
    products["revenue"] = products["revenue"].round(2)
    products.insert(0, "day", date)
    return {"stats": stats, "products": products, "users": pd.DataFrame({"user_id": users})}


def rollup_business(stores: Stores, dates: list[str] | None = None) -> RollupSummary:
    summary = RollupSummary()
    since = float(stores.state.get(WATERMARK_BUSINESS) or 0)
    newest = since
    if dates is None:
        dates, newest = _changed_event_dates(stores, since)
    for date in dates:
        for name, frame in business_day(stores, date).items():
            _write(stores, layout.business_rollup_key(date, name), frame)
        summary.business_dates.append(date)
    if summary.business_dates:
        stores.state.put(WATERMARK_BUSINESS, repr(newest))
        stores.state.put(layout.VERSION_BUSINESS_ROLLUP, f"{time.time():.6f}")
    return summary


def rollup_all(stores: Stores) -> RollupSummary:
    screen = rollup_screen_time(stores)
    business = rollup_business(stores)
    screen.business_dates = business.business_dates
    return screen
