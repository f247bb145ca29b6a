"""Event and metric compaction: dedup, quarantine of bad lines, watermarks, versions."""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from data_access import layout
from data_access.stores import Stores
from pipeline import events

NOW = dt.datetime(2026, 11, 2, tzinfo=dt.UTC).timestamp()
HOUR = "2026/11/01/08"


def pageview(event_id: str, second: int = 0, **changes: Any) -> dict:
    return {
        "event_id": event_id,
        "event_type": "pageview",
        "ts": f"2026-11-01T08:{second // 60:02d}:{second % 60:02d}Z",
        "user_id": "u0000001",
        "session_id": "s1",
        "page": f"/products/{event_id}",
        "referrer": "",
        **changes,
    }


def lines(*items: dict | bytes) -> bytes:
    encoded = [i if isinstance(i, bytes) else json.dumps(i).encode() for i in items]
    return b"\n".join(encoded) + b"\n"


def write(stores: Stores, key: str, data: bytes) -> str:
    stores.lake.write_bytes(key, data)
    return key


def table_at(stores: Stores, key: str) -> pa.Table:
    return pq.read_table(io.BytesIO(stores.lake.read_bytes(key)))


def listing(stores: Stores) -> list[tuple[str, float]]:
    return [(i.key, i.modified) for i in stores.lake.list("")]


def seed_pageviews(stores: Stores) -> None:
    write(
        stores,
        f"raw/events/pageview/{HOUR}/a.jsonl",
        lines(
            pageview("e2", 5),
            pageview("e1", 1),
            b"{not json",
            pageview("e1", 9, page="/retry"),  # the same event sent twice: the first wins
            b"",
            pageview("e3", 3, ts="yesterday"),
        ),
    )
    write(
        stores,
        f"raw/events/pageview/{HOUR}/b.jsonl",
        lines(pageview("e2", 5), pageview("e4", 7, event_type="purchase"), pageview("e5", 2)),
    )


def test_compaction_dedups_sorts_and_quarantines_every_bad_line(local_stores: Stores) -> None:
    seed_pageviews(local_stores)
    summary = events.compact_events(local_stores, now=NOW)

    assert (summary.partitions, summary.compacted, summary.lines) == (1, 1, 8)
    assert (summary.rows, summary.duplicates, summary.quarantined) == (3, 2, 3)
    table = table_at(local_stores, layout.events_key("pageview", "2026-11-01", 8))
    assert table.schema.field("ts").type == pa.timestamp("ms", tz="UTC")
    rows = table.to_pylist()
    assert [r["event_id"] for r in rows] == ["e1", "e5", "e2"]  # by ts
    assert rows[0]["page"] == "/products/e1"
    assert rows[0]["referrer"] == ""
    assert rows[0]["ts"] == dt.datetime(2026, 11, 1, 8, 0, 1, tzinfo=dt.UTC)

    reasons = {
        info.key: json.loads(local_stores.lake.read_bytes(info.key))
        for info in local_stores.lake.list("quarantine/events/")
    }
    base = f"quarantine/events/pageview/{HOUR}"
    assert set(reasons) == {
        f"{base}/a.3.reason.json",
        f"{base}/a.6.reason.json",
        f"{base}/b.2.reason.json",
    }
    assert reasons[f"{base}/a.3.reason.json"]["line"] == "{not json"
    assert reasons[f"{base}/a.3.reason.json"]["codes"] == ["not_json"]
    assert reasons[f"{base}/a.6.reason.json"]["codes"] == ["bad_ts"]
    assert reasons[f"{base}/b.2.reason.json"]["codes"] == ["event_type_mismatch"]
    assert reasons[f"{base}/b.2.reason.json"]["raw_key"] == f"raw/events/pageview/{HOUR}/b.jsonl"


def test_unchanged_partitions_are_skipped_and_new_batches_recompact(local_stores: Stores) -> None:
    seed_pageviews(local_stores)
    events.compact_events(local_stores, now=NOW)
    versions = local_stores.state.get_many(["version:events", "version:events:pageview"])
    assert set(versions) == {"version:events", "version:events:pageview"}
    before = listing(local_stores)

    again = events.compact_events(local_stores, now=NOW + 60)
    assert (again.compacted, again.unchanged) == (0, 1)
    assert listing(local_stores) == before
    assert local_stores.state.get("version:events") == versions["version:events"]

    write(local_stores, f"raw/events/pageview/{HOUR}/c.jsonl", lines(pageview("e6", 4)))
    third = events.compact_events(local_stores, now=NOW + 120)
    assert (third.compacted, third.rows, third.duplicates) == (1, 4, 2)
    table = table_at(local_stores, layout.events_key("pageview", "2026-11-01", 8))
    assert sorted(table.column("event_id").to_pylist()) == ["e1", "e2", "e5", "e6"]
    assert local_stores.state.get("version:events") != versions["version:events"]
    assert local_stores.state.get("version:events:pageview").startswith(f"{NOW + 120:.6f}-")


def test_recompacting_a_partition_with_only_bad_lines_writes_an_empty_hour(
    local_stores: Stores,
) -> None:
    write(local_stores, "raw/events/custom/2026/11/01/09/x.jsonl", lines(b"[1, 2]"))
    summary = events.compact_events(local_stores, now=NOW)
    table = table_at(local_stores, layout.events_key("custom", "2026-11-01", 9))
    assert (summary.rows, summary.quarantined, table.num_rows) == (0, 1, 0)
    assert table.schema == events.EVENT_SCHEMAS["custom"]


def test_purchase_and_custom_columns(local_stores: Stores) -> None:
    purchase = {
        "event_id": "p1",
        "event_type": "purchase",
        "ts": "2026-11-01T10:00:00.250Z",
        "user_id": "u1",
        "session_id": "s1",
        "order_id": "o1",
        "product_id": "p017",
        "product_name": "Socks",
        "category": "Apparel",
        "quantity": 3,
        "unit_price": 4.5,
        "amount": 13.5,
        "currency": "USD",
    }
    custom = {
        "event_id": "c1",
        "event_type": "custom",
        "ts": "2026-11-01T10:00:00Z",
        "user_id": "u1",
        "session_id": "s1",
        "name": "search",
        "properties": {"query": "socks", "results": 31},
    }
    write(local_stores, "raw/events/purchase/2026/11/01/10/g.jsonl", lines(purchase))
    write(local_stores, "raw/events/custom/2026/11/01/10/g.jsonl", lines(custom))
    events.compact_events(local_stores, now=NOW)

    bought = table_at(local_stores, layout.events_key("purchase", "2026-11-01", 10)).to_pylist()[0]
    assert (bought["quantity"], bought["amount"], bought["currency"]) == (3, 13.5, "USD")
    assert bought["ts"].microsecond == 250_000
    said = table_at(local_stores, layout.events_key("custom", "2026-11-01", 10)).to_pylist()[0]
    assert json.loads(said["properties"]) == custom["properties"]


def test_since_hour_compacts_only_later_hours(local_stores: Stores) -> None:
    for hour in ("2026/10/30/23", "2026/11/01/07", "2026/11/01/08"):
        write(local_stores, f"raw/events/pageview/{hour}/a.jsonl", lines(pageview("e1")))
    since = dt.datetime(2026, 11, 1, 8, 30, tzinfo=dt.UTC)
    summary = events.compact_events(local_stores, since_hour=since, now=NOW)
    written = [i.key for i in local_stores.lake.list("processed/events/")]
    assert summary.compacted == 1
    assert written == [layout.events_key("pageview", "2026-11-01", 8)]


def test_unknown_layouts_are_reported_not_dropped_silently(local_stores: Stores) -> None:
    write(local_stores, f"raw/events/refund/{HOUR}/a.jsonl", lines(pageview("e1")))
    write(local_stores, "raw/events/pageview/notes.txt", b"hello")
    summary = events.compact_events(local_stores, now=NOW)
    assert sorted(summary.unrecognised_keys) == [
        "raw/events/pageview/notes.txt",
        f"raw/events/refund/{HOUR}/a.jsonl",
    ]
    assert list(local_stores.lake.list("processed/")) == []


def test_metrics_compaction_dedups_points_and_bumps_version(local_stores: Stores) -> None:
    def point(minute: int, host: str, value: float) -> dict:
        ts = f"2026-11-01T08:{minute:02d}:00Z"
        return {"ts": ts, "host": host, "metric": "cpu_percent", "value": value}

    write(
        local_stores,
        f"raw/metrics/{HOUR}/gen-web-1.jsonl",
        lines(point(5, "web-1", 20.5), point(0, "web-1", 10), point(5, "web-1", 99.0)),
    )
    write(
        local_stores,
        f"raw/metrics/{HOUR}/gen-web-2.jsonl",
        lines(point(0, "web-2", 30), {"ts": "later", "host": "web-2", "metric": "x", "value": 1}),
    )
    summary = events.compact_metrics(local_stores, now=NOW)
    assert (summary.rows, summary.duplicates, summary.quarantined) == (3, 1, 1)
    table = table_at(local_stores, layout.metrics_key("2026-11-01", 8))
    assert table.schema == events.METRICS_SCHEMA
    assert [(r["host"], r["value"]) for r in table.to_pylist()] == [
        ("web-1", 10.0),
        ("web-2", 30.0),
        ("web-1", 20.5),
    ]
    assert local_stores.lake.exists(f"quarantine/metrics/{HOUR}/gen-web-2.2.reason.json")
    assert local_stores.state.get("version:metrics").startswith(f"{NOW:.6f}-")
    assert local_stores.state.get("version:events") is None


def test_event_parquet_is_gzip_with_dictionary_strings(local_stores: Stores) -> None:
    seed_pageviews(local_stores)
    events.compact_events(local_stores, now=NOW)
    data = local_stores.lake.read_bytes(layout.events_key("pageview", "2026-11-01", 8))
    row_group = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0)
    columns = {
        row_group.column(i).path_in_schema: row_group.column(i)
        for i in range(row_group.num_columns)
    }
    assert {c.compression for c in columns.values()} == {"GZIP"}
    assert columns["user_id"].has_dictionary_page
