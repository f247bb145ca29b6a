"""Compaction of closed dates, and index records past their retention (local backend)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest

from data_access import layout
from data_access.factory import build_stores
from data_access.local import SqliteMetadataIndex
from data_access.queries import CustomerTrendQuery, FleetDailyQuery
from data_access.settings import DataSettings
from data_access.stores import Stores
from pipeline import process
from pipeline.reconcile import reconcile, requeue_missed
from pipeline.rollup import rollup_screen_time
from tests.unit.test_process import session, upload_bytes
from tests.unit.test_reconcile import age_raw_uploads

OLD = dt.date.today() - dt.timedelta(days=20)
RETENTION_DAYS = 14


class Clock:
    def __init__(self) -> None:
        self.shift = 0.0

    def __call__(self) -> float:
        return dt.datetime.now(dt.UTC).timestamp() + self.shift


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stores(tmp_path: Path, clock: Clock) -> Stores:
    settings = DataSettings(
        lake_root=tmp_path / "lake",
        state_db=tmp_path / "state.sqlite",
        index_retention_days=RETENTION_DAYS,
    )
    built = build_stores(settings)
    # The index on a clock the test moves: its records pass their retention on demand.
    index = SqliteMetadataIndex(settings.state_db, retention_days=RETENTION_DAYS, clock=clock)
    return dataclasses.replace(built, index=index)


def upload(stores: Stores, customer: str, minutes: int, *, queue: bool = True) -> str:
    key = layout.raw_upload_key(customer, OLD.isoformat())
    start = dt.datetime.combine(OLD, dt.time(9))
    end = start + dt.timedelta(minutes=minutes)
    body = upload_bytes(
        [session(start.isoformat(), end.isoformat())], customer_id=customer, date=OLD
    )
    stores.lake.write_bytes(key, body)
    if queue:
        stores.queue.send([key])
    return key


def seconds_on(stores: Stores, customer: str | None = None) -> int:
    if customer is None:
        daily = FleetDailyQuery(OLD, OLD).load(stores)
        return int(daily["total_seconds"].sum())
    trend = CustomerTrendQuery(OLD, OLD, customer_id=customer).load(stores)
    return int(trend["seconds"].sum())


def test_batches_become_one_part_per_bucket_with_each_day_once(stores: Stores) -> None:
    customers = [f"c{n:07d}" for n in range(30)]
    for batch in (customers[:10], customers[10:20], customers[20:]):
        for customer in batch:
            upload(stores, customer, 10)
        assert process.drain(stores).processed == len(batch)
    buckets = {layout.screen_time_bucket(c) for c in customers}
    before = list(stores.lake.list(layout.PROCESSED_SCREEN_TIME))
    assert len(before) > len(buckets)  # several batches wrote parts in the same buckets

    summary = rollup_screen_time(stores).compaction
    assert summary.dates == [OLD.isoformat()]
    assert (summary.parts_read, summary.parts_written) == (len(before), len(buckets))
    after = list(stores.lake.list(layout.PROCESSED_SCREEN_TIME))
    assert len(after) == len(buckets)
    manifest = json.loads(stores.state.get(layout.screen_time_compaction(OLD.isoformat())))
    assert sorted(manifest["parts"].values()) == [info.key for info in after]
    held = stores.lake.read_table([info.key for info in after])["customer_id"].to_pylist()
    assert sorted(set(held)) == customers  # every customer, in the part of its bucket
    assert seconds_on(stores) == 30 * 600
    assert all(seconds_on(stores, c) == 600 for c in customers[::7])
    report = reconcile(stores)
    assert report.ok, report.problems()


def test_a_day_whose_record_has_passed_its_retention_is_read_replaced_and_deduplicated(
    stores: Stores, clock: Clock
) -> None:
    # Processed three days ago, when the index's clock said so too.
    clock.shift = -3 * 86_400
    for customer, minutes in (("c1", 10), ("c2", 20)):
        key = upload(stores, customer, minutes, queue=False)
        process.process_upload(stores, key, now=clock())
    age_raw_uploads(DataSettings(lake_root=stores.lake.root), 3 * 86_400)  # type: ignore[attr-defined]
    # Folds, compacts the closed date, then prunes the records past their retention (two
    # days after they were written, by now).
    assert rollup_screen_time(stores).compaction.index_pruned == 2
    clock.shift = 0.0
    assert stores.index.get("c1", OLD.isoformat()) is None

    # The customer's view finds the day in the compacted part.
    assert seconds_on(stores, "c1") == 600
    assert reconcile(stores).ok
    assert requeue_missed(stores) == 0  # handled before its date was compacted

    # A corrected re-upload replaces the compacted version: the fleet counts it once.
    upload(stores, "c1", 30)
    summary = process.drain(stores)
    assert (summary.replaced, summary.processed) == (1, 0)
    rollup_screen_time(stores)
    assert seconds_on(stores, "c1") == 1800
    assert seconds_on(stores) == 1800 + 1200
    parts = list(stores.lake.list(layout.PROCESSED_SCREEN_TIME))
    hashes = stores.lake.read_table([p.key for p in parts], ["customer_id", "content_hash"])
    assert hashes["customer_id"].to_pylist().count("c1") == 1  # the old version was dropped

    # Once that record has gone too, a redelivery of the same bytes changes nothing.
    clock.shift += 2 * 86_400 + 60
    key = layout.raw_upload_key("c1", OLD.isoformat())
    stores.queue.send([key])
    assert process.drain(stores).duplicate == 1
    rollup_screen_time(stores)
    assert seconds_on(stores) == 1800 + 1200
    report = reconcile(stores)
    assert report.ok, report.problems()
