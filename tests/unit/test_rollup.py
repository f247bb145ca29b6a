"""Rollups: incremental, replace-not-add on re-upload, and equal to a recomputation."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa

from data_access import layout
from data_access.queries import APP_DIMENSION, FleetAppsQuery, FleetDailyQuery, FleetHoursQuery
from data_access.stores import Stores, UploadRecord
from pipeline.rollup import rollup_business, rollup_screen_time

D1, D2 = "2026-11-01", "2026-11-02"


def put_day(stores: Stores, customer: str, date: str, rows: list[tuple], uploaded_at: float):
    """rows: (day, hour, app_id, seconds) -> a processed file plus its index record."""
    first = dt.date.fromisoformat(date)
    hours = [r[1] + 24 * (dt.date.fromisoformat(r[0]) - first).days for r in rows]
    table = pa.table(
        {
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
    key = layout.processed_upload_key(customer, date)
    size = stores.lake.write_table(key, table)
    record = UploadRecord(
        customer,
        date,
        key,
        layout.raw_upload_key(customer, date),
        0,
        size,
        len(rows),
        uploaded_at,
        f"hash-{uploaded_at}",
    )
    stores.index.put(record)


def customers(stores: Stores, date: str) -> pd.DataFrame:
    key = layout.screen_time_rollup_key(date, "customers")
    return stores.lake.read_table([key]).to_pandas().set_index("customer_id")


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
    assert sorted(summary.screen_time_dates) == [D1, D2]  # nothing spills into the 3rd

    day1, day2 = customers(local_stores, D1), customers(local_stores, D2)
    assert day1.loc["c1", "seconds"] == 900
    assert day1.loc["c2", "seconds"] == 0  # present with zero usage, not missing
    assert day2.loc["c1", "seconds"] == 120  # the part of a session after midnight
    assert day2.loc["c2", "seconds"] == 60

    fleet = FleetDailyQuery(dt.date(2026, 11, 1), dt.date(2026, 11, 2)).load(local_stores)
    assert fleet["active_customers"].tolist() == [1, 2]
    assert fleet["total_seconds"].tolist() == [900, 180]
    apps = FleetAppsQuery(dt.date(2026, 11, 1), dt.date(2026, 11, 2)).load(local_stores)
    assert dict(zip(apps["app_id"], apps["seconds"], strict=True)) == {"chat": 660, "video": 420}
    assert dict(zip(apps["app_id"], apps["category"], strict=True)) == {
        "chat": "Social",
        "video": "Video",
    }
    hours = FleetHoursQuery(dt.date(2026, 11, 1), dt.date(2026, 11, 1)).load(local_stores)
    assert hours.set_index("hour").loc[9, "avg_seconds"] == 600


def test_reupload_replaces_and_rerun_changes_nothing(local_stores):
    put_day(local_stores, "c1", D1, [(D1, 9, "chat", 600)], 1.0)
    rollup_screen_time(local_stores)
    version = local_stores.state.get(layout.VERSION_SCREEN_TIME_ROLLUP)

    assert rollup_screen_time(local_stores).screen_time_dates == []
    assert local_stores.state.get(layout.VERSION_SCREEN_TIME_ROLLUP) == version

    put_day(local_stores, "c1", D1, [(D1, 10, "chat", 100)], 5.0)  # corrected re-upload
    rollup_screen_time(local_stores)
    assert customers(local_stores, D1).loc["c1", "seconds"] == 100
    assert local_stores.state.get(layout.VERSION_SCREEN_TIME_ROLLUP) != version


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
