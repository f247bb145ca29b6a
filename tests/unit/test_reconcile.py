"""Reconcile: passes on a clean run, names what is missing when something is."""

from __future__ import annotations

import datetime as dt
import json
import os
import time

import pyarrow as pa

from data_access import layout
from data_access.settings import DataSettings
from data_access.stores import Stores
from pipeline import events, process, rollup
from pipeline.reconcile import reconcile, requeue_missed

NOW = dt.datetime(2026, 11, 10, tzinfo=dt.UTC).timestamp()


def upload(customer_id: str, date: str, sessions: list[tuple[str, str]]) -> bytes:
    body = {
        "schema_version": 1,
        "customer_id": customer_id,
        "date": date,
        "timezone": "UTC",
        "device": {"device_id": "d", "model": "m", "os": "o", "agent_version": "1"},
        "sessions": [
            {
                "app_id": "com.example.app",
                "app_name": "App",
                "category": "Social",
                "start": f"{date}T{start}",
                "end": f"{date}T{end}",
                "pickups": 1,
                "notifications": 0,
            }
            for start, end in sessions
        ],
    }
    return json.dumps(body).encode()


def pageview(event_id: str, hour: int) -> bytes:
    return json.dumps(
        {
            "event_id": event_id,
            "event_type": "pageview",
            "ts": f"2026-11-01T{hour:02d}:10:00Z",
            "user_id": "u1",
            "session_id": "s1",
            "page": "/",
            "referrer": "",
        }
    ).encode()


def seed(stores: Stores) -> None:
    lake = stores.lake
    screen_time = {
        layout.raw_upload_key(customer, date): upload(
            customer, date, [("08:00:00", "08:30:00"), ("23:00:00", "23:59:59")]
        )
        for customer in ("c1", "c2")
        for date in ("2026-11-01", "2026-11-02")
    }
    screen_time[layout.raw_upload_key("c3", "2026-11-01")] = b'{"schema_version": 1, "cu'
    screen_time[layout.raw_upload_key("c4", "2026-11-01")] = upload(
        "c4", "2026-11-01", [("09:00:00", "08:00:00")]
    )
    for key, raw in screen_time.items():
        lake.write_bytes(key, raw)
    stores.queue.send(list(screen_time))  # as the uploads' notifications do
    lake.write_bytes(
        "raw/events/pageview/2026/11/01/08/a.jsonl",
        b"\n".join([pageview("e1", 8), pageview("e2", 8), pageview("e1", 8), b"oops"]),
    )
    lake.write_bytes("raw/events/pageview/2026/11/01/09/a.jsonl", pageview("e3", 9))


def age_raw_uploads(settings: DataSettings, seconds: float) -> None:
    """Date the raw uploads back, as if the devices sent them that long ago."""
    when = time.time() - seconds
    for path in (settings.lake_root / layout.RAW_SCREEN_TIME).rglob("*.json"):
        os.utime(path, (when, when))


def run_pipeline(stores: Stores) -> None:
    process.drain(stores)
    events.compact_events(stores, now=NOW)


def test_clean_run_reconciles_with_counts(local_stores: Stores) -> None:
    seed(local_stores)
    run_pipeline(local_stores)
    report = reconcile(local_stores)

    assert report.ok, report.problems()
    assert (report.raw_uploads, report.processed, report.quarantined) == (6, 4, 2)
    assert report.quarantined_by_reason == {"truncated": 1, "end_before_start": 1}
    assert (report.events_raw_lines, report.events_processed_rows) == (5, 3)
    assert (report.events_quarantined, report.events_duplicates_collapsed) == (1, 1)
    assert report.problems() == []


def test_deleted_processed_part_is_reported_missing(local_stores: Stores) -> None:
    seed(local_stores)
    run_pipeline(local_stores)
    rollup.rollup_screen_time(local_stores)  # folds, then compacts the closed dates
    manifest = json.loads(local_stores.state.get(layout.screen_time_compaction("2026-11-02")))
    gone = manifest["parts"][f"{layout.screen_time_bucket('c2'):02d}"]
    local_stores.lake.delete(gone)

    report = reconcile(local_stores)
    assert not report.ok
    assert "c2/2026-11-02" in report.missing_objects
    # Its raw upload is accounted for by the record; the record's lost rows are the problem.
    assert (report.processed, report.unhandled) == (4, [])
    assert any("c2/2026-11-02" in line for line in report.problems())


def test_unprocessed_upload_and_lost_quarantine_are_unhandled(
    local_stores: Stores, local_settings: DataSettings
) -> None:
    seed(local_stores)
    age_raw_uploads(local_settings, 3600)
    run_pipeline(local_stores)
    late = layout.raw_upload_key("c5", "2026-11-01")
    local_stores.lake.write_bytes(late, upload("c5", "2026-11-01", []))
    reasons = [i.key for i in local_stores.lake.list("quarantine/screen_time/")]
    local_stores.lake.delete(next(k for k in reasons if k.endswith(".reason.json")))

    report = reconcile(local_stores)
    assert len(report.unhandled) == 2 and late in report.unhandled
    assert report.quarantined == 1

    # The catch-up for lost notifications queues exactly these two, and they are handled.
    assert requeue_missed(local_stores) == 2
    summary = process.drain(local_stores)
    assert (summary.processed, summary.quarantined) == (1, 1)
    report = reconcile(local_stores)
    assert report.ok, report.problems()
    assert (report.raw_uploads, report.processed, report.quarantined) == (7, 5, 2)


def test_changed_raw_bytes_are_unhandled_until_processed_again(local_stores: Stores) -> None:
    seed(local_stores)
    run_pipeline(local_stores)
    key = layout.raw_upload_key("c1", "2026-11-01")
    replaced = local_stores.index.get("c1", "2026-11-01").object_key
    local_stores.lake.write_bytes(key, upload("c1", "2026-11-01", [("10:00:00", "10:05:00")]))
    assert reconcile(local_stores).unhandled == [key]
    assert process.process_upload(local_stores, key).status == "replaced"
    assert reconcile(local_stores).ok  # the replaced version awaits compaction: not an orphan
    rollup.rollup_screen_time(local_stores)
    assert not local_stores.lake.exists(replaced)
    assert reconcile(local_stores).ok


def test_orphaned_rows_are_reported(local_stores: Stores) -> None:
    seed(local_stores)
    run_pipeline(local_stores)

    def part(customer_id: str, row_hash: str) -> str:
        bucket = layout.screen_time_bucket(customer_id)
        key = layout.screen_time_part_key("2026-11-01", bucket, f"{customer_id}-{row_hash[:4]}")
        table = process.PART_SCHEMA.empty_table().to_pydict()
        table.update(customer_id=[customer_id], content_hash=[row_hash], uploaded_at=[1.0])
        table.update(hour=[1], app_id=["x"], seconds=[1], sessions=[1], pickups=[0])
        table.update(notifications=[0], session_spans=[[]])
        local_stores.lake.write_table(key, pa.table(table, schema=process.PART_SCHEMA))
        return key

    # A customer with no records at all, and a version of an indexed day the index does
    # not name and nothing noted as superseded.
    orphans = [part("c9", "9" * 16), part("c1", "0" * 16)]
    # A replaced version noted for compaction to drop is not an orphan.
    held = part("c2", "f" * 16)
    local_stores.records.put("superseded", f"c2/2026-11-01/{'f' * 64}", {"at": 1.0})

    report = reconcile(local_stores)
    assert sorted(line.split()[0] for line in report.orphaned_objects) == sorted(orphans)
    assert not any(held in line for line in report.orphaned_objects)


def test_event_problems_are_reported(local_stores: Stores) -> None:
    seed(local_stores)
    run_pipeline(local_stores)
    lake = local_stores.lake
    # An hour compacted, then lost; a bad line's reason lost; an id processed twice.
    lake.delete(layout.events_key("pageview", "2026-11-01", 9))
    lake.delete("quarantine/events/pageview/2026/11/01/08/a.4.reason.json")
    copy = lake.read_table([layout.events_key("pageview", "2026-11-01", 8)])
    lake.write_table(layout.events_key("pageview", "2026-11-02", 0), copy)

    report = reconcile(local_stores)
    assert report.events_missing == ["raw/events/pageview/2026/11/01/09/a.jsonl:1 e3"]
    assert report.events_unquarantined == ["raw/events/pageview/2026/11/01/08/a.jsonl:4"]
    assert sorted(report.events_duplicated) == ["pageview e1", "pageview e2"]
    assert not report.ok
