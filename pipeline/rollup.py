"""Per-date rollups for the fleet and business views.

Incremental: screen time follows the metadata index's upload-time order from a watermark,
business stats recompute only the days whose event partitions changed. Re-running after a
failure recomputes the same partitions from their sources, so nothing is counted twice.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa

from data_access import layout
from data_access.queries import app_names, customer_day_rows
from data_access.stores import Stores, UploadRecord

PARQUET = {"compression": "zstd", "use_dictionary": True}
WATERMARK_SCREEN_TIME = "rollup:screen_time:watermark"
WATERMARK_BUSINESS = "rollup:business:watermark"

_APP_KEYS = ["customer_id", "source_date", "app_id", "app_name", "category"]
_COUNTS = ["seconds", "sessions", "pickups", "notifications"]


@dataclass
class RollupSummary:
    screen_time_dates: list[str] = field(default_factory=list)
    business_dates: list[str] = field(default_factory=list)
    uploads_read: int = 0


def _next_day(date: str) -> str:
    return (dt.date.fromisoformat(date) + dt.timedelta(days=1)).isoformat()


def _read_frame(stores: Stores, key: str) -> pd.DataFrame | None:
    table = stores.lake.read_table([key])
    return table.to_pandas() if table.num_columns else None


def _write(stores: Stores, key: str, frame: pd.DataFrame) -> None:
    stores.lake.write_table(key, pa.Table.from_pandas(frame, preserve_index=False), **PARQUET)


def rollup_screen_time(stores: Stores, *, batch: int = 50_000) -> RollupSummary:
    summary = RollupSummary()
    watermark = float(stores.state.get(WATERMARK_SCREEN_TIME) or 0)
    while True:
        records = stores.index.uploaded_since(watermark, limit=batch)
        if not records:
            break
        dates = _apply_uploads(stores, records)
        summary.uploads_read += len(records)
        summary.screen_time_dates.extend(d for d in dates if d not in summary.screen_time_dates)
        watermark = records[-1].uploaded_at
        # The watermark moves only after the dates are written: a crash re-reads this batch.
        stores.state.put(WATERMARK_SCREEN_TIME, repr(watermark))
        if len(records) < batch:
            break
    if summary.screen_time_dates:
        stores.state.put(layout.VERSION_SCREEN_TIME_ROLLUP, f"{time.time():.6f}")
    return summary


def _apply_uploads(stores: Stores, records: list[UploadRecord]) -> list[str]:
    """Replace the rows of these uploads in the detail tables of every date they touch."""
    latest: dict[tuple[str, str], UploadRecord] = {}
    for record in records:
        latest[(record.customer_id, record.date)] = record
    by_date: dict[str, list[UploadRecord]] = defaultdict(list)
    for record in latest.values():
        by_date[record.date].append(record)
        by_date[_next_day(record.date)].append(record)  # a session may spill past midnight

    rows = customer_day_rows(stores, list(latest.values())).merge(
        app_names(stores), on="app_id", how="left"
    )
    rows["app_name"] = rows["app_name"].fillna(rows["app_id"])
    rows["category"] = rows["category"].fillna("Other")
    by_day = dict(tuple(rows.groupby("day"))) if len(rows) else {}

    written = []
    for date, touching in sorted(by_date.items()):
        fresh = [by_day[date]] if date in by_day else []
        replaced = {(r.customer_id, r.date) for r in touching}
        # Uploads dated today are present even with zero usage: "no usage" differs from "no upload".
        present = sorted({r.customer_id for r in touching if r.date == date})
        if not any(len(f) for f in fresh) and not present:
            continue
        _rewrite_date(stores, date, fresh, replaced, present)
        written.append(date)
    return written


def _drop(frame: pd.DataFrame | None, replaced: set[tuple[str, str]]) -> pd.DataFrame | None:
    if frame is None or frame.empty:
        return frame
    keys = list(zip(frame["customer_id"], frame["source_date"], strict=True))
    return frame[[key not in replaced for key in keys]]


def _rewrite_date(
    stores: Stores,
    date: str,
    fresh: list[pd.DataFrame],
    replaced: set[tuple[str, str]],
    present: list[str],
) -> None:
    new_rows = pd.concat(fresh, ignore_index=True) if fresh else pd.DataFrame()
    new_apps = new_hours = None
    if len(new_rows):
        new_apps = new_rows.groupby(_APP_KEYS, as_index=False)[_COUNTS].sum()
        new_hours = new_rows.groupby(["customer_id", "source_date", "hour"], as_index=False)[
            ["seconds"]
        ].sum()

    old_apps = _drop(
        _read_frame(stores, layout.screen_time_rollup_key(date, "detail_apps")), replaced
    )
    old_hours = _drop(
        _read_frame(stores, layout.screen_time_rollup_key(date, "detail_hours")), replaced
    )
    old_present = _read_frame(stores, layout.screen_time_rollup_key(date, "customers"))

    apps = pd.concat(
        [f for f in (old_apps, new_apps) if f is not None and len(f)], ignore_index=True
    )
    hours = pd.concat(
        [f for f in (old_hours, new_hours) if f is not None and len(f)], ignore_index=True
    )
    if apps.empty:
        apps = pd.DataFrame({c: pd.Series(dtype="object") for c in _APP_KEYS}).assign(
            **{c: pd.Series(dtype="int64") for c in _COUNTS}
        )
    if hours.empty:
        hours = pd.DataFrame(
            {
                "customer_id": pd.Series(dtype="object"),
                "source_date": pd.Series(dtype="object"),
                "hour": pd.Series(dtype="int64"),
                "seconds": pd.Series(dtype="int64"),
            }
        )
    for column in _COUNTS:
        apps[column] = apps[column].astype("int64")
    hours["seconds"] = hours["seconds"].astype("int64")
    hours["hour"] = hours["hour"].astype("int64")

    customers = apps.groupby("customer_id")[_COUNTS].sum()
    customers["apps"] = apps[apps["seconds"] > 0].groupby("customer_id")["app_id"].nunique()
    uploaded = set(present)
    if old_present is not None and len(old_present):
        uploaded |= set(old_present["customer_id"])
    customers = customers.reindex(sorted(uploaded | set(customers.index)), fill_value=0)
    customers = customers.fillna(0).astype("int64").rename_axis("customer_id").reset_index()
    customers.insert(1, "day", date)

    app_totals = (
        apps[apps["seconds"] > 0]
        .groupby(["app_id", "app_name", "category"], as_index=False)
        .agg(
            seconds=("seconds", "sum"),
            customers=("customer_id", "nunique"),
            sessions=("sessions", "sum"),
        )
    )
    app_totals.insert(0, "day", date)
    hour_totals = hours.groupby("hour", as_index=False).agg(
        seconds=("seconds", "sum"), customers=("customer_id", "nunique")
    )
    hour_totals.insert(0, "day", date)

    _write(stores, layout.screen_time_rollup_key(date, "detail_apps"), apps)
    _write(stores, layout.screen_time_rollup_key(date, "detail_hours"), hours)
    _write(stores, layout.screen_time_rollup_key(date, "apps"), app_totals)
    _write(stores, layout.screen_time_rollup_key(date, "hours"), hour_totals)
    # customers.parquet last: it also records which uploads the date has seen.
    _write(stores, layout.screen_time_rollup_key(date, "customers"), customers)


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
