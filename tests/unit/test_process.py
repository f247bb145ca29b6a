"""Screen-time processing: aggregation, Parquet layout, idempotence, quarantine, S3 events."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import os
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_access import layout
from data_access.queries import CustomerDayQuery, customer_data_version
from data_access.settings import DataSettings
from data_access.stores import Stores
from pipeline import compact, generate, process, rollup, schema
from pipeline.reconcile import requeue_missed

DAY = dt.date(2026, 11, 1)
NOW = dt.datetime(2026, 11, 10, 12, tzinfo=dt.UTC).timestamp()
KEY = "raw/screen_time/c0000042/2026-11-01.json"
# Parquet Thrift PageHeader, compact protocol: field 1 (type, i32) then its zigzag varint.
PAGE_HEADER_TYPE = {b"\x15\x00": "DATA_PAGE", b"\x15\x04": "DICTIONARY_PAGE", b"\x15\x06": "V2"}


def session(start: str, end: str, app: str = "com.instagram.android", **extra: Any) -> dict:
    return {
        "app_id": app,
        "app_name": app.rsplit(".", 1)[-1].title(),
        "category": "Social",
        "start": start,
        "end": end,
        "pickups": 1,
        "notifications": 2,
        **extra,
    }


def upload_bytes(
    sessions: list[dict], customer_id: str = "c0000042", date: dt.date = DAY, **fields: Any
) -> bytes:
    body = {
        "schema_version": 1,
        "customer_id": customer_id,
        "date": date.isoformat(),
        "timezone": "Europe/Berlin",
        "device": {
            "device_id": "d-1",
            "model": "Pixel 8",
            "os": "Android 15",
            "agent_version": "5",
        },
        "sessions": sessions,
        **fields,
    }
    return json.dumps(body, separators=(",", ":")).encode()


SESSIONS = [
    session("2026-11-01T08:15:03", "2026-11-01T08:21:44"),
    session("2026-11-01T08:30:00", "2026-11-01T10:10:00", "com.google.android.youtube"),
]


def put(stores: Stores, key: str, data: bytes) -> str:
    stores.lake.write_bytes(key, data)
    return key


def deliver(stores: Stores, key: str, data: bytes) -> str:
    """Write and queue the upload, as a device PUT (or its S3 notification) does."""
    put(stores, key, data)
    stores.queue.send([key])
    return key


def processed_key(raw: bytes, customer_id: str = "c0000042", date: str = "2026-11-01") -> str:
    """The part a batch of this one upload writes: named by the versions it holds."""
    name = hashlib.sha256(f"{customer_id}:{hashlib.sha256(raw).hexdigest()}".encode())
    bucket = layout.screen_time_bucket(customer_id)
    return layout.screen_time_part_key(date, bucket, name.hexdigest()[:16])


def sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def customer_view_version(stores: Stores, customer_id: str = "c0000042") -> str:
    """The data version of the customer's day view of DAY."""
    return CustomerDayQuery(customer_id, DAY).read_version(stores)


def listing(stores: Stores, prefix: str = "") -> list[tuple[str, int, float]]:
    return [(i.key, i.size, i.modified) for i in stores.lake.list(prefix)]


def read(stores: Stores, key: str) -> pa.Table:
    return pq.read_table(io.BytesIO(stores.lake.read_bytes(key)))


def durations(raw: bytes) -> int:
    body = json.loads(raw)
    return sum(
        int(
            (
                dt.datetime.fromisoformat(s["end"]) - dt.datetime.fromisoformat(s["start"])
            ).total_seconds()
        )
        for s in body["sessions"]
    )


# ---- processing and the Parquet layout ----------------------------------------------------------


def test_processed_upload_has_the_agreed_columns_rows_index_and_versions(
    local_stores: Stores,
) -> None:
    raw = upload_bytes(SESSIONS)
    put(local_stores, KEY, raw)
    outcome = process.process_upload(local_stores, KEY, now=NOW)

    assert (outcome.status, outcome.customer_id, outcome.date) == (
        "processed",
        "c0000042",
        "2026-11-01",
    )
    assert outcome.bytes == len(raw)
    assert outcome.content_hash == hashlib.sha256(raw).hexdigest()
    object_key = processed_key(raw)
    bucket = layout.screen_time_bucket("c0000042")
    assert object_key.startswith(f"processed/screen_time/date=2026-11-01/bucket={bucket:02d}/part-")
    assert [info.key for info in local_stores.lake.list("processed/")] == [object_key]
    table = read(local_stores, object_key)
    assert table.schema.names == [
        "customer_id", "content_hash", "uploaded_at",
        "hour", "app_id", "seconds", "sessions", "pickups", "notifications", "session_spans",
    ]  # fmt: skip
    assert [str(t) for t in table.schema.types][:9] == [
        "string", "string", "double", "int8", "string", "int32", "int16", "int16", "int16",
    ]  # fmt: skip
    assert set(table.column("customer_id").to_pylist()) == {"c0000042"}
    assert set(table.column("content_hash").to_pylist()) == {outcome.content_hash[:16]}
    rows = table.to_pylist()
    # Instagram 08:15:03-08:21:44; YouTube 08:30-10:10 split over three hours.
    assert [(r["hour"], r["app_id"], r["seconds"], r["sessions"]) for r in rows] == [
        (8, "com.google.android.youtube", 30 * 60, 1),
        (8, "com.instagram.android", 401, 1),
        (9, "com.google.android.youtube", 3600, 0),
        (10, "com.google.android.youtube", 600, 0),
    ]
    assert [r["pickups"] for r in rows] == [1, 1, 0, 0]  # on the start hour only
    # Each session once, on the row of its start hour and app: the sessions drill-down.
    assert [r["session_spans"] for r in rows] == [
        [
            {
                "start": 8 * 3600 + 30 * 60,
                "end": 10 * 3600 + 10 * 60,
                "pickups": 1,
                "notifications": 2,
            }
        ],
        [
            {
                "start": 8 * 3600 + 15 * 60 + 3,
                "end": 8 * 3600 + 21 * 60 + 44,
                "pickups": 1,
                "notifications": 2,
            }
        ],
        [],
        [],
    ]
    # Names and categories go to the app dimension once, not into every file.
    assert local_stores.records.get("app", "com.instagram.android")["name"] == "Android"

    record = local_stores.index.get("c0000042", "2026-11-01")
    assert record.content_hash == hashlib.sha256(raw).hexdigest()
    assert (record.object_key, record.raw_key, record.rows) == (object_key, KEY, 4)
    assert (
        record.parquet_bytes
        == outcome.parquet_bytes
        == len(local_stores.lake.read_bytes(object_key))
    )
    assert record.uploaded_at == NOW
    version = local_stores.state.get("version:screen_time:latest_upload")
    assert version == f"{NOW:.6f}-{record.content_hash[:12]}"


def test_a_customers_views_are_versioned_by_their_index_records(local_stores: Stores) -> None:
    from data_access.queries import CustomerTrendQuery

    trend = CustomerTrendQuery(DAY - dt.timedelta(days=6), DAY, customer_id="c0000042")
    day = CustomerDayQuery("c0000042", DAY)
    assert trend.read_version(local_stores) == day.read_version(local_stores) == "0"
    put(local_stores, KEY, upload_bytes(SESSIONS))
    process.process_upload(local_stores, KEY, now=NOW)
    first = trend.read_version(local_stores), day.read_version(local_stores)
    assert "0" not in first
    # No state write per upload: the record the upload wrote is the version.
    assert local_stores.state.get("version:customer:c0000042") is None
    # Another customer's upload, and the same bytes again, leave the version alone.
    other = "raw/screen_time/c0000043/2026-11-01.json"
    put(local_stores, other, upload_bytes(SESSIONS, customer_id="c0000043"))
    process.process_upload(local_stores, other, now=NOW + 30)
    assert process.process_upload(local_stores, KEY, now=NOW + 40).status == "duplicate"
    assert (trend.read_version(local_stores), day.read_version(local_stores)) == first
    # A corrected re-upload is a new version of every view that shows that day.
    put(local_stores, KEY, upload_bytes(SESSIONS[:1]))
    assert process.process_upload(local_stores, KEY, now=NOW + 60).status == "replaced"
    second = trend.read_version(local_stores), day.read_version(local_stores)
    assert second[0] != first[0] and second[1] != first[1]
    # A day outside a view's dates does not move it.
    later = DAY + dt.timedelta(days=2)
    key = f"raw/screen_time/c0000042/{later.isoformat()}.json"
    put(local_stores, key, upload_bytes([], date=later))
    process.process_upload(local_stores, key, now=NOW + 90)
    assert (trend.read_version(local_stores), day.read_version(local_stores)) == second


def test_midnight_split_puts_seconds_on_both_days_and_keeps_totals(local_stores: Stores) -> None:
    sessions = [
        session("2026-11-01T22:00:00", "2026-11-01T22:30:00"),
        session("2026-11-01T23:50:00", "2026-11-02T01:10:05", pickups=3, notifications=4),
    ]
    raw = upload_bytes(sessions)
    put(local_stores, KEY, raw)
    process.process_upload(local_stores, KEY, now=NOW)
    rows = read(local_stores, processed_key(raw)).to_pylist()

    # Hours 24 and up are the next day's.
    assert [(r["hour"], r["seconds"], r["sessions"], r["pickups"]) for r in rows] == [
        (22, 1800, 1, 1),
        (23, 600, 1, 3),
        (24, 3600, 0, 0),
        (25, 605, 0, 0),
    ]
    assert sum(r["seconds"] for r in rows) == durations(raw)
    assert sum(r["sessions"] for r in rows) == len(sessions)


def test_empty_day_is_a_record_without_rows(local_stores: Stores) -> None:
    raw = upload_bytes([])
    put(local_stores, KEY, raw)
    outcome = process.process_upload(local_stores, KEY, now=NOW)
    table = read(local_stores, processed_key(raw))
    assert outcome.status == "processed"
    assert table.num_rows == 0 and table.schema == process.PART_SCHEMA
    assert local_stores.index.get("c0000042", "2026-11-01").rows == 0


def test_part_is_zstd_with_dictionaries_v2_pages_and_customer_statistics(
    local_stores: Stores,
) -> None:
    raw = upload_bytes(SESSIONS)
    put(local_stores, KEY, raw)
    process.process_upload(local_stores, KEY, now=NOW)
    data = local_stores.lake.read_bytes(processed_key(raw))
    metadata = pq.ParquetFile(io.BytesIO(data)).metadata
    assert metadata.num_row_groups == 1
    row_group = metadata.row_group(0)
    for index in range(row_group.num_columns):
        column = row_group.column(index)
        assert column.compression == "ZSTD", column.path_in_schema
        # The page header at data_page_offset says which page kind it is.
        start = column.data_page_offset
        assert PAGE_HEADER_TYPE.get(data[start : start + 2]) == "V2", column.path_in_schema
        if column.path_in_schema in ("customer_id", "content_hash", "app_id"):
            assert column.has_dictionary_page, column.path_in_schema
            assert "RLE_DICTIONARY" in column.encodings
            start = column.dictionary_page_offset
            assert PAGE_HEADER_TYPE.get(data[start : start + 2]) == "DICTIONARY_PAGE"
        # Readers find a customer through these; no other column pays for statistics.
        has_range = column.statistics is not None and column.statistics.has_min_max
        assert has_range == (column.path_in_schema == "customer_id"), column.path_in_schema


def test_size_on_generated_uploads_is_far_below_the_raw_json(tmp_path: Path) -> None:
    from data_access.factory import build_stores

    stores = build_stores(DataSettings(lake_root=tmp_path / "lake", state_db=tmp_path / "s.db"))
    end = dt.date(2026, 11, 1)
    raw_total = 0
    for number in range(3):
        profile = generate.customer_profile(5, number, end)
        for offset in range(3):
            day = end - dt.timedelta(days=offset)
            raw = generate.screen_time_upload(5, profile, day)
            if raw is not None:
                raw_total += len(raw)
                deliver(stores, f"raw/screen_time/{profile.customer_id}/{day}.json", raw)
    summary = process.drain(stores)
    assert summary.processed >= 6 and summary.quarantined == 0
    # Measured ~4.9 KB and ~6.5x on this data (~2.1 KB of it the sessions, in parts of a
    # few customers each); guard against a regression to plain settings.
    assert summary.parquet_bytes / summary.processed < 5632
    assert raw_total / summary.parquet_bytes > 5.5


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 86_399), st.integers(1, 30_000), st.sampled_from("abc")),
        max_size=30,
    )
)
def test_aggregation_keeps_seconds_and_sessions_of_any_valid_day(
    spans: list[tuple[int, int, str]],
) -> None:
    # Non-overlapping sessions from arbitrary spans: keep each one that starts after the last.
    midnight = dt.datetime.combine(DAY, dt.time())
    sessions, last_end = [], 0
    for start, length, app in sorted(spans):
        if start < last_end:
            continue
        begin, end = (
            midnight + dt.timedelta(seconds=start),
            midnight + dt.timedelta(seconds=start + length),
        )
        sessions.append(session(begin.isoformat(), end.isoformat(), f"com.app.{app}"))
        last_end = start + length
    raw = upload_bytes(sessions)
    result = schema.validate_upload(raw, today=DAY)
    assert result.ok, result.problems
    table = process.aggregate(result.upload)
    assert sum(table.column("seconds").to_pylist()) == durations(raw)
    assert sum(table.column("sessions").to_pylist()) == len(sessions)
    assert max(table.column("seconds").to_pylist(), default=0) <= 3600
    keys = list(zip(*(table.column(c).to_pylist() for c in ("hour", "app_id")), strict=True))
    assert keys == sorted(set(keys))  # sorted, one row per (hour, app)


# ---- idempotence, replacement, quarantine -------------------------------------------------------


def test_processing_twice_is_a_duplicate_that_writes_nothing(local_stores: Stores) -> None:
    put(local_stores, KEY, upload_bytes(SESSIONS))
    process.process_upload(local_stores, KEY, now=NOW)
    before = listing(local_stores)
    version = customer_view_version(local_stores)

    outcome = process.process_upload(local_stores, KEY, now=NOW + 60)
    assert outcome.status == "duplicate"
    assert listing(local_stores) == before
    assert customer_view_version(local_stores) == version


def test_corrected_reupload_replaces_the_day(local_stores: Stores) -> None:
    first = upload_bytes(SESSIONS)
    put(local_stores, KEY, first)
    process.process_upload(local_stores, KEY, now=NOW)
    corrected = upload_bytes(SESSIONS[:1])
    put(local_stores, KEY, corrected)

    outcome = process.process_upload(local_stores, KEY, now=NOW + 60)
    assert outcome.status == "replaced"
    record = local_stores.index.get("c0000042", "2026-11-01")
    assert record.content_hash == hashlib.sha256(corrected).hexdigest()
    # A new part for the new content; the replaced version's rows go when the closed date
    # is compacted, which the rollup does once it has folded the replacement.
    assert record.object_key == processed_key(corrected) != processed_key(first)
    assert local_stores.lake.exists(processed_key(first))
    # Noted with the upload time of what replaced it: compaction waits for the fold to pass.
    note = local_stores.records.get("superseded", f"c0000042/2026-11-01/{sha(first)}")
    assert note == {"at": record.uploaded_at} == {"at": NOW + 60}
    compaction = rollup.rollup_screen_time(local_stores).compaction
    assert (compaction.dates, compaction.parts_read, compaction.parts_written) == (
        ["2026-11-01"],
        2,
        1,
    )
    [compacted] = [info.key for info in local_stores.lake.list("processed/")]
    table = read(local_stores, compacted)
    assert table.column("app_id").to_pylist() == ["com.instagram.android"]
    assert set(table.column("content_hash").to_pylist()) == {sha(corrected)[:16]}
    assert local_stores.records.scan("superseded") == []
    assert customer_view_version(local_stores) == customer_data_version([record])


def test_replaced_version_the_summaries_hold_stays_until_the_rollup_subtracts_it(
    local_stores: Stores,
) -> None:
    first = upload_bytes(SESSIONS)
    put(local_stores, KEY, first)
    process.process_upload(local_stores, KEY, now=NOW)
    rollup.rollup_screen_time(local_stores)  # folds it, then compacts the closed date
    watermark = layout.SCREEN_TIME_FOLD_WATERMARK
    assert float(local_stores.state.get(watermark)) == NOW

    corrected = upload_bytes(SESSIONS[:1])
    put(local_stores, KEY, corrected)
    assert process.process_upload(local_stores, KEY, now=NOW + 60).status == "replaced"
    record = local_stores.index.get("c0000042", "2026-11-01")
    assert record.object_key == processed_key(corrected)
    # The summaries hold the first version: the record says so, for the fold to subtract it.
    assert record.held == f"{sha(first)}@{NOW!r}"
    # Until the fold has, compaction keeps the first version's rows.
    assert not compact.compact_date(local_stores, "2026-11-01")
    held = {
        h
        for i in local_stores.lake.list("processed/")
        for h in read(local_stores, i.key)["content_hash"].to_pylist()
    }
    assert held == {sha(first)[:16], sha(corrected)[:16]}

    assert rollup.rollup_screen_time(local_stores).compaction.dates == ["2026-11-01"]
    assert float(local_stores.state.get(watermark)) == NOW + 60
    [compacted] = [info.key for info in local_stores.lake.list("processed/")]
    assert set(read(local_stores, compacted).column("content_hash").to_pylist()) == {
        sha(corrected)[:16]
    }


def test_quarantine_writes_raw_copy_and_reason_once(local_stores: Stores) -> None:
    bad = [session("2026-11-01T08:00:00", "2026-11-01T07:00:00")]
    raw = upload_bytes(bad)
    put(local_stores, KEY, raw)
    outcome = process.process_upload(local_stores, KEY, now=NOW)
    assert (outcome.status, outcome.reason) == ("quarantined", "end_before_start")

    content_hash = hashlib.sha256(raw).hexdigest()
    data_key, reason_key = process.quarantine_keys(KEY, content_hash)
    name = hashlib.sha256(KEY.encode()).hexdigest()[:16] + "-" + content_hash[:12]
    assert data_key == f"quarantine/screen_time/{name}.json"
    assert local_stores.lake.read_bytes(data_key) == raw
    reason = json.loads(local_stores.lake.read_bytes(reason_key))
    assert reason["raw_key"] == KEY and reason["content_hash"] == content_hash
    assert reason["codes"] == ["end_before_start"]
    assert reason["problems"][0]["path"] == "sessions[0]"
    assert dt.datetime.fromisoformat(reason["quarantined_at"]).timestamp() == NOW
    assert local_stores.index.get("c0000042", "2026-11-01") is None
    assert list(local_stores.lake.list("processed/")) == []
    version = local_stores.state.get(layout.VERSION_QUARANTINE)
    assert version == f"{NOW:.6f}-{content_hash[:12]}"

    # The same bad bytes again: found quarantined already, nothing new written.
    before = listing(local_stores)
    again = process.process_upload(local_stores, KEY, now=NOW + 60)
    assert (again.status, again.reason) == ("duplicate", "end_before_start")
    assert listing(local_stores) == before
    assert local_stores.state.get(layout.VERSION_QUARANTINE) == version


@pytest.mark.parametrize(
    ("key", "code"),
    [
        ("raw/screen_time/c1/2026-11-01.txt", "bad_key"),
        ("raw/screen_time/c1/extra/2026-11-01.json", "bad_key"),
        ("raw/screen_time/c1/2026-13-01.json", "bad_date"),
        ("raw/screen_time/-rm -rf/2026-11-01.json", "unsafe_customer_id"),
        ("raw/screen_time/" + "x" * 65 + "/2026-11-01.json", "unsafe_customer_id"),
    ],
)
def test_bad_keys_are_quarantined_without_the_customer_id_in_the_name(
    local_stores: Stores, key: str, code: str
) -> None:
    put(local_stores, key, upload_bytes(SESSIONS))
    outcome = process.process_upload(local_stores, key, now=NOW)
    assert (outcome.status, outcome.reason, outcome.customer_id) == ("quarantined", code, None)
    keys = [info.key for info in local_stores.lake.list("quarantine/")]
    assert len(keys) == 2
    assert all(k.startswith("quarantine/screen_time/") and "/" not in k[23:] for k in keys)
    assert list(local_stores.lake.list("processed/")) == []


@pytest.mark.parametrize(
    ("key", "code"),
    [
        ("raw/screen_time/../2026-11-01.json", "unsafe_customer_id"),
        ("raw/screen_time/../../etc/2026-11-01.json", "bad_key"),
    ],
)
def test_key_escaping_the_lake_is_quarantined_without_reading(
    local_stores: Stores, key: str, code: str
) -> None:
    outcome = process.process_upload(local_stores, key, now=NOW)
    assert (outcome.status, outcome.reason) == ("quarantined", code)
    keys = [info.key for info in local_stores.lake.list("quarantine/")]
    assert len(keys) == 1 and keys[0].endswith(".reason.json")
    reason = json.loads(local_stores.lake.read_bytes(keys[0]))
    assert reason["raw_key"] == key and reason["raw_bytes"] == 0


def test_generator_bad_uploads_are_all_quarantined_with_their_code(local_stores: Stores) -> None:
    expected = {
        "not_json": {"not_json"},
        "truncated_json": {"truncated"},
        "missing_field": {"schema"},
        "wrong_type": {"schema", "negative_count"},
        "negative_duration": {"end_before_start"},
        "overlapping_sessions": {"overlap"},
        "future_date": {"future_date"},
        "customer_mismatch": {"key_mismatch"},
        "oversize": {"oversize"},
    }
    end = dt.date.fromtimestamp(NOW)
    for index in range(len(generate.BAD_UPLOAD_CASES)):
        case, key, raw = generate.bad_upload(1, index, end, 5)
        put(local_stores, key, raw)
        outcome = process.process_upload(local_stores, key, now=NOW)
        assert outcome.status == "quarantined", case
        assert set(outcome.reason.split(",")) & expected[case], (case, outcome.reason)


# ---- entry points -------------------------------------------------------------------------------


def test_s3_event_with_url_encoded_keys(local_stores: Stores) -> None:
    good = put(local_stores, "raw/screen_time/c-1/2026-11-01.json", upload_bytes(SESSIONS, "c-1"))
    bad = put(local_stores, "raw/screen_time/bad id/2026-11-01.json", upload_bytes(SESSIONS))

    def record(key: str, name: str = "ObjectCreated:Put", *, encoded: str | None = None) -> dict:
        encoded = encoded or urllib.parse.quote_plus(key, safe="/")
        return {"eventName": name, "s3": {"bucket": {"name": "lake"}, "object": {"key": encoded}}}

    assert record(bad)["s3"]["object"]["key"] == "raw/screen_time/bad+id/2026-11-01.json"
    event = {
        "Records": [
            record(good, encoded="raw%2Fscreen_time%2Fc%2D1%2F2026-11-01.json"),
            record(bad),
            record(good, "ObjectRemoved:Delete"),
            record("raw/events/pageview/2026/11/01/08/b.jsonl"),
            record("raw/screen_time/c2/2026-11-01.json"),  # announced, then deleted
        ]
    }
    outcomes = process.handle_s3_event(event, local_stores)
    assert [(o.raw_key, o.status, o.reason) for o in outcomes] == [
        (good, "processed", None),
        (bad, "quarantined", "unsafe_customer_id"),
    ]
    assert local_stores.index.get("c-1", "2026-11-01") is not None


class CountingLake:
    """Counts raw reads, to show the catch-up and the worker skip what was handled."""

    def __init__(self, lake: Any) -> None:
        self._lake = lake
        self.reads: list[str] = []

    def read_bytes(self, key: str) -> bytes:
        self.reads.append(key)
        return self._lake.read_bytes(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lake, name)


def age(settings_: DataSettings, key: str, seconds: float) -> None:
    path = settings_.lake_root / key
    when = time.time() - seconds
    os.utime(path, (when, when))


def test_drain_processes_what_is_queued_and_lists_nothing(local_stores: Stores) -> None:
    put(local_stores, KEY, upload_bytes(SESSIONS))  # its notification never arrives
    assert process.drain(local_stores).handled == 0
    assert local_stores.index.get("c0000042", "2026-11-01") is None

    local_stores.queue.send([KEY])
    summary = process.drain(local_stores)
    assert (summary.processed, summary.handled, summary.failed) == (1, 1, 0)
    assert local_stores.index.get("c0000042", "2026-11-01").raw_key == KEY
    assert local_stores.queue.depth() == 0


def test_requeue_missed_queues_lost_uploads_then_skips_without_reading(
    local_stores: Stores, local_settings: DataSettings
) -> None:
    keys = [
        put(
            local_stores,
            f"raw/screen_time/c{n}/2026-11-0{d}.json",
            upload_bytes([], f"c{n}", DAY.replace(day=d)),
        )
        for n in range(3)
        for d in (1, 2)
    ]
    bad = put(local_stores, "raw/screen_time/c9/2026-11-01.json", b"{nope")
    for key in [*keys, bad]:
        age(local_settings, key, 3600)
    counting = CountingLake(local_stores.lake)
    stores = dataclasses.replace(local_stores, lake=counting)

    # Every notification was lost: the catch-up lists the raw zone (reading no object).
    assert requeue_missed(stores) == 7
    assert counting.reads == []
    seen: list[str] = []
    summary = process.drain(local_stores, progress=lambda o: seen.append(o.raw_key))
    assert (summary.processed, summary.quarantined, summary.handled) == (6, 1, 7)
    assert summary.quarantined_by_reason == {"not_json": 1}
    assert sorted(seen) == sorted([*keys, bad])

    # All handled with their current bytes: the next catch-up queues and reads nothing.
    assert requeue_missed(stores) == 0
    again = process.drain(stores)
    assert (again.handled, again.vanished, again.failed, counting.reads) == (0, 0, 0, [])

    # A corrected re-upload whose notification was lost is newer than its record.
    put(local_stores, keys[0], upload_bytes(SESSIONS, "c0"))
    assert requeue_missed(stores) == 1
    third = process.drain(stores)
    assert (third.replaced, third.handled, counting.reads) == (1, 1, [keys[0]])
    record = local_stores.index.get("c0", "2026-11-01")
    assert record.content_hash == hashlib.sha256(upload_bytes(SESSIONS, "c0")).hexdigest()


def test_requeue_missed_queues_rewritten_bytes_and_processing_finds_duplicates(
    local_stores: Stores,
) -> None:
    bad = "raw/screen_time/c9/2026-11-01.json"
    deliver(local_stores, KEY, upload_bytes(SESSIONS))
    deliver(local_stores, bad, b"{nope")
    first = process.drain(local_stores)
    assert (first.processed, first.quarantined) == (1, 1)
    before = listing(local_stores, "processed/") + listing(local_stores, "quarantine/")
    version = customer_view_version(local_stores)

    # The same bytes written again, their notifications lost: newer than when they were
    # handled, so queued again; processing finds them duplicates and writes nothing.
    put(local_stores, KEY, upload_bytes(SESSIONS))
    put(local_stores, bad, b"{nope")
    assert requeue_missed(local_stores) == 2
    again = process.drain(local_stores)
    assert (again.duplicate, again.processed, again.quarantined, again.handled) == (2, 0, 0, 2)
    assert listing(local_stores, "processed/") + listing(local_stores, "quarantine/") == before
    assert customer_view_version(local_stores) == version


def test_process_upload_refuses_keys_outside_screen_time(local_stores: Stores) -> None:
    with pytest.raises(ValueError, match="not a screen-time upload key"):
        process.process_upload(local_stores, "raw/events/x.json")


def test_the_sessions_drill_down_shows_the_processed_version_without_the_raw_upload(
    local_stores: Stores,
) -> None:
    from data_access.queries import CustomerSessionsQuery

    query = CustomerSessionsQuery("c0000042", DAY)
    midnight = [session("2026-11-01T23:50:00", "2026-11-02T00:20:00", pickups=3)]
    put(local_stores, KEY, upload_bytes([*SESSIONS, *midnight]))
    process.process_upload(local_stores, KEY, now=NOW)
    shown = query.load(local_stores)
    assert shown.to_dict("records") == [
        {"start": "2026-11-01T08:15:03", "end": "2026-11-01T08:21:44", "app_name": "Android",
         "category": "Social", "minutes": 6.7, "pickups": 1, "notifications": 2},
        {"start": "2026-11-01T08:30:00", "end": "2026-11-01T10:10:00", "app_name": "Youtube",
         "category": "Social", "minutes": 100.0, "pickups": 1, "notifications": 2},
        {"start": "2026-11-01T23:50:00", "end": "2026-11-02T00:20:00", "app_name": "Android",
         "category": "Social", "minutes": 30.0, "pickups": 3, "notifications": 2},
    ]  # fmt: skip
    # A rejected re-upload leaves its bytes at the raw key; the processed version stays.
    rejected = upload_bytes([session("2026-11-01T09:00:00", "2026-11-01T08:00:00")])
    put(local_stores, KEY, rejected)
    assert process.process_upload(local_stores, KEY, now=NOW + 60).status == "quarantined"
    assert query.load(local_stores).equals(shown)
    # Raw uploads expire after a week; the sessions are in the processed part.
    local_stores.lake.delete(KEY)
    assert query.load(local_stores).equals(shown)
    # Compacted, they read the same.
    assert rollup.rollup_screen_time(local_stores).compaction.dates == ["2026-11-01"]
    assert query.load(local_stores).equals(shown)


def test_sessions_of_a_part_written_before_spans_come_from_matching_raw_bytes(
    local_stores: Stores,
) -> None:
    from data_access.queries import CustomerSessionsQuery

    raw = upload_bytes(SESSIONS)
    put(local_stores, KEY, raw)
    process.process_upload(local_stores, KEY, now=NOW)
    key = processed_key(raw)
    old = read(local_stores, key).drop_columns(["session_spans"])
    local_stores.lake.write_table(key, old)
    query = CustomerSessionsQuery("c0000042", DAY)
    starts = ["2026-11-01T08:15:03", "2026-11-01T08:30:00"]
    assert query.load(local_stores)["start"].tolist() == starts
    # Compaction keeps such a part's rows, its missing column as nulls.
    assert rollup.rollup_screen_time(local_stores).compaction.dates == ["2026-11-01"]
    assert query.load(local_stores)["start"].tolist() == starts
    # Only bytes that passed validation: a rejected re-upload's bytes are not shown.
    put(local_stores, KEY, upload_bytes([session("2026-11-01T09:00:00", "2026-11-01T08:00:00")]))
    assert process.process_upload(local_stores, KEY, now=NOW + 60).status == "quarantined"
    assert query.load(local_stores).empty
