"""Rollups: additive, a re-upload replaces its old contribution, and a re-run adds nothing."""

from __future__ import annotations

import datetime as dt
import hashlib

import pandas as pd
import pyarrow as pa
import pytest

from data_access import layout
from data_access.queries import (
    APP_DIMENSION,
    CustomerTrendQuery,
    FleetAppsQuery,
    FleetDailyQuery,
    FleetHoursQuery,
    summary_frame,
)
from data_access.stores import Stores, UploadRecord
from pipeline.process import held_versions
from pipeline.rollup import rollup_business, rollup_screen_time

D1, D2 = "2026-11-01", "2026-11-02"


def put_day(stores: Stores, customer: str, date: str, rows: list[tuple], uploaded_at: float):
    """rows: (day, hour, app_id, seconds) -> a part of this customer-day plus its record."""
    first = dt.date.fromisoformat(date)
    hours = [r[1] + 24 * (dt.date.fromisoformat(r[0]) - first).days for r in rows]
    content_hash = hashlib.sha256(f"{customer}{date}{rows}".encode()).hexdigest()
    table = pa.table(
        {
            "customer_id": pa.array([customer] * len(rows), pa.string()),
            "content_hash": pa.array([layout.row_hash(content_hash)] * len(rows), pa.string()),
            "uploaded_at": pa.array([uploaded_at] * len(rows), pa.float64()),
            "hour": pa.array(hours, pa.int8()),
            "app_id": [r[2] for r in rows],
            "seconds": pa.array([r[3] for r in rows], pa.int32()),
            "sessions": pa.array([1] * len(rows), pa.int16()),
            "pickups": pa.array([1] * len(rows), pa.int16()),
            "notifications": pa.array([2] * len(rows), pa.int16()),
        }
    )
    for app in ("chat", "video"):
        category = "Social" if app == "chat" else "Video"
        stores.records.put_new(APP_DIMENSION, app, {"name": app.title(), "category": category})
    bucket = layout.screen_time_bucket(customer)
    key = layout.screen_time_part_key(date, bucket, content_hash[:16])
    size = stores.lake.write_table(key, table)
    # What the worker notes of the version it replaces, for the fold to subtract.
    watermark = float(stores.state.get(layout.SCREEN_TIME_FOLD_WATERMARK) or 0)
    held = held_versions(stores.index.get(customer, date), watermark)
    record = UploadRecord(
        customer,
        date,
        key,
        layout.raw_upload_key(customer, date),
        0,
        size,
        len(rows),
        uploaded_at,
        content_hash,
        held,
    )
    stores.index.put(record)
    return record


def daily(stores: Stores) -> pd.DataFrame:
    return FleetDailyQuery(dt.date(2026, 11, 1), dt.date(2026, 11, 2)).load(stores)


def test_rollup_totals_spill_and_empty_days(local_stores):
    put_day(
        local_stores,
        "c1",
        D1,
        [(D1, 9, "chat", 600), (D1, 23, "video", 300), (D2, 0, "video", 120)],
        1.0,
    )
    put_day(local_stores, "c2", D1, [], 2.0)  # uploaded, no usage
    put_day(local_stores, "c2", D2, [(D2, 10, "chat", 60)], 3.0)
    summary = rollup_screen_time(local_stores)
    assert summary.screen_time_dates == [D1, D2]  # nothing spills into the 3rd
    assert summary.uploads_read == 3

    fleet = daily(local_stores)
    # Active customers count each date's uploads with usage; seconds follow the clock.
    assert fleet["active_customers"].tolist() == [1, 1]
    assert fleet["total_seconds"].tolist() == [900, 180]  # 120 s after c1's midnight
    day1 = summary_frame(
        local_stores.lake.read_table([layout.screen_time_summary_key(D1)])
    ).set_index(["dim", "key"])
    assert day1.loc[("day", ""), "uploads"] == 2  # the empty upload is present, not missing
    apps = FleetAppsQuery(dt.date(2026, 11, 1), dt.date(2026, 11, 2)).load(local_stores)
    assert dict(zip(apps["app_id"], apps["seconds"], strict=True)) == {"chat": 660, "video": 420}
    assert dict(zip(apps["app_id"], apps["customer_days"], strict=True)) == {"chat": 2, "video": 1}
    assert dict(zip(apps["app_id"], apps["category"], strict=True)) == {
        "chat": "Social",
        "video": "Video",
    }
    hours = FleetHoursQuery(dt.date(2026, 11, 1), dt.date(2026, 11, 1)).load(local_stores)
    assert hours.set_index("hour").loc[9, "avg_seconds"] == 600


def test_reupload_replaces_and_rerun_changes_nothing(local_stores):
    first = put_day(local_stores, "c1", D1, [(D1, 9, "chat", 600)], 1.0)
    put_day(local_stores, "c2", D2, [(D2, 9, "chat", 50)], 2.0)
    rollup_screen_time(local_stores)
    d1, d2 = (layout.screen_time_date_version(d) for d in (D1, D2))
    versions = local_stores.state.get_many([d1, d2])

    assert rollup_screen_time(local_stores).screen_time_dates == []
    assert local_stores.state.get_many([d1, d2]) == versions

    put_day(local_stores, "c1", D1, [(D1, 10, "chat", 100)], 5.0)  # corrected re-upload
    assert rollup_screen_time(local_stores).screen_time_dates == [D1]
    assert daily(local_stores)["total_seconds"].tolist() == [100, 50]
    # Only the changed date's version moved: cached answers for D2 alone survive.
    after = local_stores.state.get_many([d1, d2])
    assert after[d1] != versions[d1] and after[d2] == versions[d2]
    # The replaced version left the totals, so compaction (the date is closed) dropped it.
    assert not local_stores.lake.exists(first.object_key)
    [part] = local_stores.lake.list(
        layout.screen_time_bucket_prefix(D1, layout.screen_time_bucket("c1"))
    )
    hashes = set(local_stores.lake.read_table([part.key]).column("content_hash").to_pylist())
    assert layout.row_hash(first.content_hash) not in hashes


def test_a_fold_that_dies_half_way_counts_nothing_twice(local_stores, monkeypatch):
    put_day(local_stores, "c1", D1, [(D1, 9, "chat", 600), (D2, 1, "chat", 60)], 1.0)
    rollup_screen_time(local_stores)
    put_day(local_stores, "c1", D1, [(D1, 9, "chat", 300), (D2, 1, "chat", 30)], 2.0)
    put_day(local_stores, "c3", D1, [(D1, 8, "video", 40)], 3.0)

    real_put = local_stores.state.put

    def dies_before_moving_the_watermark(name: str, value: str) -> None:
        if name == layout.SCREEN_TIME_FOLD_WATERMARK:
            raise RuntimeError("killed")
        real_put(name, value)

    monkeypatch.setattr(local_stores.state, "put", dies_before_moving_the_watermark)
    with pytest.raises(RuntimeError):
        rollup_screen_time(local_stores)
    monkeypatch.setattr(local_stores.state, "put", real_put)
    # The summaries were written, the watermark was not.
    rollup_screen_time(local_stores)
    assert daily(local_stores)["total_seconds"].tolist() == [340]
    assert daily(local_stores)["active_customers"].tolist() == [2]
    spill = summary_frame(local_stores.lake.read_table([layout.screen_time_summary_key(D2)]))
    assert spill.set_index(["dim", "key"]).loc[("day", ""), "seconds"] == 30


def test_business_rollup_from_events(local_stores):
    purchases = pa.table(
        {
            "order_id": ["o1", "o2", "o3"],
            "user_id": ["u1", "u2", "u1"],
            "product_id": ["p1", "p2", "p1"],
            "product_name": ["One", "Two", "One"],
            "category": ["A", "B", "A"],
            "quantity": [1, 2, 1],
            "amount": [10.0, 5.5, 10.0],
        }
    )
    pageviews = pa.table({"user_id": ["u1", "u2", "u3", "u3"]})
    local_stores.lake.write_table(layout.events_key("purchase", D1, 9), purchases)
    local_stores.lake.write_table(layout.events_key("pageview", D1, 9), pageviews)
    assert rollup_business(local_stores).business_dates == [D1]
    stats = local_stores.lake.read_table([layout.business_rollup_key(D1, "stats")]).to_pylist()[0]
    assert stats["revenue"] == 25.5
    assert stats["orders"] == 3
    assert (stats["visitors"], stats["buyers"], stats["dau"]) == (3, 2, 3)
    products = local_stores.lake.read_table([layout.business_rollup_key(D1, "products")])
    by_id = {row["product_id"]: row for row in products.to_pylist()}
    assert by_id["p1"]["revenue"] == 20.0 and by_id["p1"]["orders"] == 2
    # Nothing changed since: the next run has nothing to do.
    assert rollup_business(local_stores).business_dates == []


def test_a_customer_without_uploads_in_the_range_is_an_empty_trend(local_stores):
    put_day(local_stores, "c1", D1, [(D1, 9, "chat", 600)], 1.0)
    october = CustomerTrendQuery(dt.date(2026, 10, 1), dt.date(2026, 10, 30), customer_id="c1")
    unknown = CustomerTrendQuery(dt.date(2026, 11, 1), dt.date(2026, 11, 2), customer_id="c999")
    for query in (october, unknown):
        trend = query.load(local_stores)
        assert trend.empty
        assert list(trend.columns) == ["day", "seconds", "sessions", "pickups", "notifications"]
    november = CustomerTrendQuery(dt.date(2026, 11, 1), dt.date(2026, 11, 2), customer_id="c1")
    assert november.load(local_stores)["seconds"].tolist() == [600]
