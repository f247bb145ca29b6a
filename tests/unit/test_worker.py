"""The local upload queue and its workers: at-least-once delivery that counts everything once.

The queue is the embedded backend's SQLite queue; its clock is a manual one, so a crashed
worker's visibility timeout passes without waiting.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest

from data_access import layout
from data_access.factory import build_stores
from data_access.local import SqliteUploadQueue
from data_access.settings import DataSettings
from data_access.stores import Stores
from pipeline import process
from pipeline.generate import generate
from pipeline.process import drain, drain_parallel, process_keys
from pipeline.reconcile import reconcile
from tests.integrity.test_integrity import _upload

END = dt.date(2024, 5, 7)


class ManualClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def stores(local_settings: DataSettings, clock: ManualClock) -> Stores:
    built = build_stores(local_settings)
    queue = SqliteUploadQueue(local_settings.state_db, max_attempts=3, clock=clock)
    return Stores(built.lake, built.cache, built.index, built.state, built.records, queue)


def counted(stores: Stores) -> dict[str, int]:
    totals: dict[str, int] = {}
    names = [
        layout.pipeline_counters(
            (dt.datetime.now(dt.UTC) - dt.timedelta(hours=n)).strftime("%Y-%m-%dT%H")
        )
        for n in range(2)
    ]
    for counters in stores.state.counters(names).values():
        for name, value in counters.items():
            totals[name] = totals.get(name, 0) + value
    return totals


def assert_screen_time_reconciled(stores: Stores) -> None:
    report = reconcile(stores)
    assert (report.unhandled, report.missing_objects, report.orphaned_objects) == ([], [], [])


def put(stores: Stores, number: int, day: dt.date, variant: int = 0) -> str:
    key = layout.raw_upload_key(f"c{number:07d}", day.isoformat())
    stores.lake.write_bytes(key, _upload(number, day, variant))
    stores.queue.send([key])
    return key


def test_drain_processes_what_is_queued_and_then_has_nothing_to_do(stores: Stores) -> None:
    made = generate(
        stores.lake, customers=3, days=2, seed=3, end_date=END, hosts=0, queue=stores.queue
    )
    first = drain(stores)
    assert first.processed == made.uploads > 0 and first.quarantined == 0
    assert stores.queue.depth() == 0
    again = drain(stores)
    assert again.handled == 0
    assert counted(stores)["processed"] == made.uploads
    assert_screen_time_reconciled(stores)


def test_a_batch_writes_one_part_per_date_and_bucket_it_touches(stores: Stores) -> None:
    days = (END - dt.timedelta(days=1), END)
    for number in range(40):
        for day in days:
            put(stores, number, day)
    summary = drain(stores, batch=80)  # every message in one receive: one batch
    assert summary.processed == 80
    customers = [f"c{n:07d}" for n in range(40)]
    buckets = {layout.screen_time_bucket(c) for c in customers}
    parts = list(stores.lake.list(layout.PROCESSED_SCREEN_TIME))
    # 80 uploads, not 80 objects: one part for each (date, bucket) of the batch.
    assert len(parts) == len(days) * len(buckets) < 80
    for day in days:
        for bucket in buckets:
            [part] = stores.lake.list(layout.screen_time_bucket_prefix(day.isoformat(), bucket))
            held = stores.lake.read_table([part.key], ["customer_id"])["customer_id"]
            assert sorted(set(held.to_pylist())) == sorted(
                c for c in customers if layout.screen_time_bucket(c) == bucket
            )
    assert_screen_time_reconciled(stores)


def test_a_worker_killed_mid_batch_loses_nothing_and_counts_once(
    stores: Stores, clock: ManualClock
) -> None:
    keys = [put(stores, n, END) for n in range(3)]
    received = stores.queue.receive(10, visibility_seconds=60)
    assert sorted(m.keys[0] for m in received) == sorted(keys)
    # The worker processed one upload, then died before deleting any message.
    process_keys(stores, received[0].keys)
    assert stores.queue.receive(10, visibility_seconds=60) == []  # still invisible
    clock.now += 61
    summary = drain(stores)
    assert (summary.processed, summary.duplicate) == (2, 1)
    assert counted(stores)["processed"] == 3
    assert stores.queue.depth() == 0
    assert_screen_time_reconciled(stores)


def test_a_message_that_keeps_failing_is_dead_lettered_with_its_reason(
    stores: Stores, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    poison = put(stores, 1, END)
    healthy = put(stores, 2, END)
    real = process._prepare

    def fails_on_poison(stores_: Stores, key: str, *args: object):
        if key == poison:
            raise OSError("disk on fire")
        return real(stores_, key, *args)

    monkeypatch.setattr(process, "_prepare", fails_on_poison)
    for _ in range(3):
        drain(stores)
        clock.now += stores.queue.retry_seconds + 1
    assert stores.queue.dead_letters() == [(poison, "OSError: disk on fire")]
    assert stores.queue.depth() == 0
    assert stores.index.get("c0000002", END.isoformat()) is not None
    assert stores.index.get("c0000001", END.isoformat()) is None
    assert healthy not in dict(stores.queue.dead_letters())


def test_a_reupload_that_arrives_while_the_old_one_is_processed_is_not_lost(
    stores: Stores,
) -> None:
    key = put(stores, 1, END)
    [message] = stores.queue.receive(1, visibility_seconds=60)
    process_keys(stores, message.keys)
    put(stores, 1, END, variant=1)  # the device sends a correction meanwhile
    stores.queue.delete([message])
    assert stores.queue.depth() == 1  # the correction is still queued
    assert drain(stores).replaced == 1
    record = stores.index.get("c0000001", END.isoformat())
    assert stores.lake.read_bytes(key) == _upload(1, END, 1)
    assert record is not None and record.object_key.endswith(".parquet")
    assert_screen_time_reconciled(stores)


def test_two_workers_racing_on_one_key_commit_it_once(stores: Stores) -> None:
    key = put(stores, 1, END)
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def work() -> None:
        start.wait()
        outcomes.extend(o.status for o in process_keys(stores, [key]))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["duplicate", "processed"]
    assert counted(stores)["processed"] == 1
    assert_screen_time_reconciled(stores)


def test_parallel_workers_drain_everything_once(tmp_path: Path) -> None:
    settings = DataSettings(lake_root=tmp_path / "lake", state_db=tmp_path / "state.sqlite")
    stores = build_stores(settings)
    made = generate(
        stores.lake, customers=6, days=3, seed=5, end_date=END, hosts=0, queue=stores.queue
    )
    summary = drain_parallel(settings, workers=2, batch=4)
    assert summary.processed == made.uploads > 0 and summary.duplicate == 0
    assert stores.queue.depth() == 0
    assert counted(stores)["processed"] == made.uploads
    assert_screen_time_reconciled(stores)
