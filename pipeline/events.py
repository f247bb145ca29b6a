"""Compaction of raw JSON-lines events and metrics into one Parquet object per hour.

A partition (one event type, or the metrics, for one UTC hour) is rewritten whole from all
its raw batches whenever any of them changed, so compaction is idempotent and safe to
retry. Each partition's watermark in the state store is a digest of its raw listing
(keys, sizes, modified times): unchanged partitions are skipped without reading them.
Bad lines go to ``quarantine/`` with their reason; duplicates collapse by identity (the
event id; for metrics ``ts, host, metric``), first one wins. Rows stay in the hour their raw
batch is filed under; ``ts`` is the event's own time and is not moved between hours.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from data_access import layout
from data_access.stores import Lake, ObjectInfo, ObjectMissing, Stores
from pipeline import schema
from pipeline.schema import LineValidation

QUARANTINE_EVENTS = "quarantine/events/"
QUARANTINE_METRICS = "quarantine/metrics/"
PARQUET_OPTIONS: dict[str, object] = {
    "compression": "gzip",
    "compression_level": 9,
    "use_dictionary": True,
    "data_page_version": "2.0",
}
MAX_QUARANTINED_LINE_CHARS = 65_536
_STATE_BATCH = 500  # names per get_many: stays under SQLite's bound-parameter limit

_TS = pa.timestamp("ms", tz="UTC")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_MS = dt.timedelta(milliseconds=1)


def _string(name: str, nullable: bool = False) -> pa.Field:
    return pa.field(name, pa.string(), nullable=nullable)


_COMMON_FIELDS = [
    _string("event_id"),
    _string("event_type"),
    pa.field("ts", _TS, nullable=False),
    _string("user_id"),
    _string("session_id"),
]
EVENT_SCHEMAS: dict[str, pa.Schema] = {
    "pageview": pa.schema([*_COMMON_FIELDS, _string("page"), _string("referrer", True)]),
    "purchase": pa.schema(
        [
            *_COMMON_FIELDS,
            _string("order_id"),
            _string("product_id"),
            _string("product_name"),
            _string("category"),
            pa.field("quantity", pa.int32(), nullable=False),
            pa.field("unit_price", pa.float64(), nullable=False),
            pa.field("amount", pa.float64(), nullable=False),
            _string("currency"),
        ]
    ),
    # properties is a free-form object: stored as its JSON text.
    "custom": pa.schema([*_COMMON_FIELDS, _string("name"), _string("properties")]),
}
METRICS_SCHEMA = pa.schema(
    [
        pa.field("ts", _TS, nullable=False),
        _string("host"),
        _string("metric"),
        pa.field("value", pa.float64(), nullable=False),
    ]
)

_HOUR_PATH = r"(\d{4})/(\d{2})/(\d{2})/(\d{2})/([^/]+)\.jsonl"
_EVENT_KEY = re.compile(r"raw/events/([^/]+)/" + _HOUR_PATH)
_METRIC_KEY = re.compile(r"raw/metrics/" + _HOUR_PATH)


@dataclass(frozen=True)
class Partition:
    """One stream's raw batches for one UTC hour."""

    stream: str  # an event type, or "metrics"
    hour: dt.datetime  # aware, UTC, on the hour

    @property
    def date(self) -> str:
        return self.hour.date().isoformat()

    @property
    def path(self) -> str:
        """``yyyy/mm/dd/hh``, as in raw and quarantine keys."""
        return self.hour.strftime("%Y/%m/%d/%H")

    @property
    def output_key(self) -> str:
        if self.stream == "metrics":
            return layout.metrics_key(self.date, self.hour.hour)
        return layout.events_key(self.stream, self.date, self.hour.hour)

    @property
    def watermark_name(self) -> str:
        return f"watermark:{_family(self.stream)}:{self.stream}:{self.hour:%Y-%m-%dT%H}"


def _family(stream: str) -> str:
    return "metrics" if stream == "metrics" else "events"


def _parse_key(key: str) -> tuple[Partition, str] | None:
    """(partition, batch name) for a raw events or metrics key, None if it is neither."""
    match = _EVENT_KEY.fullmatch(key)
    if match is not None:
        stream, parts = match.group(1), match.groups()[1:]
    else:
        match = _METRIC_KEY.fullmatch(key)
        if match is None:
            return None
        stream, parts = "metrics", match.groups()
    year, month, day, hour, batch = parts
    try:
        start = dt.datetime(int(year), int(month), int(day), int(hour), tzinfo=dt.UTC)
    except ValueError:
        return None
    return Partition(stream, start), batch


def quarantine_line_key(partition: Partition, batch: str, line_number: int) -> str:
    if partition.stream == "metrics":
        base = f"{QUARANTINE_METRICS}{partition.path}"
    else:
        base = f"{QUARANTINE_EVENTS}{partition.stream}/{partition.path}"
    return f"{base}/{batch}.{line_number}.reason.json"


def validator(stream: str) -> Callable[[bytes], LineValidation]:
    if stream == "metrics":
        return schema.validate_metric_line
    return lambda line: schema.validate_event_line(line, stream)


def identity(stream: str) -> Callable[[dict[str, Any]], Hashable]:
    """What makes two lines the same record: retried sends repeat it."""
    if stream == "metrics":
        return lambda record: (record["ts"], record["host"], record["metric"])
    return lambda record: record["event_id"]


@dataclass(frozen=True)
class RawLine:
    raw_key: str
    batch: str
    line_number: int  # 1-based
    text: bytes
    result: LineValidation


def iter_lines(lake: Lake, partition: Partition, infos: list[ObjectInfo]) -> Iterator[RawLine]:
    """Every non-blank line of the partition's batches, validated, in key then line order."""
    validate = validator(partition.stream)
    for info in infos:
        parsed = _parse_key(info.key)
        if parsed is None:
            continue
        try:
            data = lake.read_bytes(info.key)
        except ObjectMissing:
            continue  # deleted since the listing; the next run sees the new listing
        for number, line in enumerate(data.split(b"\n"), start=1):
            if line.strip():
                yield RawLine(info.key, parsed[1], number, line, validate(line))


@dataclass
class CompactSummary:
    partitions: int = 0
    compacted: int = 0
    unchanged: int = 0
    lines: int = 0
    rows: int = 0
    duplicates: int = 0
    quarantined: int = 0
    bytes_written: int = 0
    changed_streams: list[str] = field(default_factory=list)
    unrecognised_keys: list[str] = field(default_factory=list)  # not compacted: say so


def list_partitions(
    lake: Lake,
    prefixes: list[str],
    *,
    since_hour: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> tuple[dict[Partition, list[ObjectInfo]], list[str]]:
    """Raw objects under the prefixes grouped by partition, and the keys that fit no pattern.

    Each prefix ends just above the ``yyyy/`` folders. With ``since_hour`` only the day
    folders from that hour's day up to ``until`` (default: tomorrow, UTC) are listed, not the
    whole history.
    """
    listings: list[Iterator[ObjectInfo]] = []
    if since_hour is None:
        listings = [lake.list(prefix) for prefix in prefixes]
    else:
        since_hour = _as_utc(since_hour).replace(minute=0, second=0, microsecond=0)
        last_day = _as_utc(until or dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date()
        for prefix in prefixes:
            day = since_hour.date()
            while day <= last_day:
                listings.append(lake.list(f"{prefix}{day:%Y/%m/%d}/"))
                day += dt.timedelta(days=1)
    partitions: dict[Partition, list[ObjectInfo]] = {}
    unrecognised: list[str] = []
    for listing in listings:
        for info in listing:
            parsed = _parse_key(info.key)
            if parsed is None:
                unrecognised.append(info.key)
            elif since_hour is None or parsed[0].hour >= since_hour:
                partitions.setdefault(parsed[0], []).append(info)
    return partitions, unrecognised


def _as_utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _watermark(infos: list[ObjectInfo]) -> str:
    listing = "\n".join(f"{i.key}\t{i.size}\t{i.modified:.6f}" for i in infos)
    return f"{len(infos)}:{hashlib.sha256(listing.encode()).hexdigest()[:24]}"


def _to_table(stream: str, records: list[dict[str, Any]]) -> pa.Table:
    table_schema = METRICS_SCHEMA if stream == "metrics" else EVENT_SCHEMAS[stream]
    columns = []
    for column in table_schema:
        if column.name == "ts":
            values = [(r["ts"] - _EPOCH) // _ONE_MS for r in records]
        elif column.name == "properties":
            values = [
                json.dumps(r["properties"], sort_keys=True, separators=(",", ":")) for r in records
            ]
        else:
            values = [r[column.name] for r in records]
        columns.append(pa.array(values, column.type))
    table = pa.Table.from_arrays(columns, schema=table_schema)
    order = ["ts", "host", "metric"] if stream == "metrics" else ["ts", "event_id"]
    return table.sort_by([(name, "ascending") for name in order])


def _quarantine_line(stores: Stores, partition: Partition, line: RawLine, now: float) -> None:
    """Write the reason document for a bad line, unless an earlier run did."""
    key = quarantine_line_key(partition, line.batch, line.line_number)
    if stores.lake.exists(key):
        return
    text = line.text.decode("utf-8", errors="replace")
    document = {
        "raw_key": line.raw_key,
        "line_number": line.line_number,
        "line": text[:MAX_QUARANTINED_LINE_CHARS],
        "line_truncated": len(text) > MAX_QUARANTINED_LINE_CHARS,
        "codes": line.result.codes,
        "problems": [p.as_dict() for p in line.result.problems],
        "quarantined_at": dt.datetime.fromtimestamp(now, dt.UTC).isoformat(),
    }
    stores.lake.write_bytes(key, json.dumps(document, indent=1).encode())


def compact_partition(
    stores: Stores, partition: Partition, infos: list[ObjectInfo], *, now: float
) -> CompactSummary:
    """Rewrite one partition's Parquet object from all its raw batches."""
    summary = CompactSummary(partitions=1, compacted=1)
    same = identity(partition.stream)
    seen: set[Hashable] = set()
    records: list[dict[str, Any]] = []
    for line in iter_lines(stores.lake, partition, infos):
        summary.lines += 1
        record = line.result.record
        if record is None:
            summary.quarantined += 1
            _quarantine_line(stores, partition, line, now)
            continue
        key = same(record)
        if key in seen:
            summary.duplicates += 1
            continue
        seen.add(key)
        records.append(record)
    table = _to_table(partition.stream, records)
    # Written even with zero rows: the hour is known to hold nothing valid.
    summary.bytes_written = stores.lake.write_table(partition.output_key, table, **PARQUET_OPTIONS)
    summary.rows = table.num_rows
    return summary


def _compact(
    stores: Stores,
    prefixes: list[str],
    *,
    since_hour: dt.datetime | None,
    now: float | None,
) -> CompactSummary:
    now = time.time() if now is None else now
    partitions, unrecognised = list_partitions(
        stores.lake, prefixes, since_hour=since_hour, until=_now_plus_day(now)
    )
    summary = CompactSummary(unrecognised_keys=unrecognised)
    known = {"metrics", *schema.EVENT_TYPES}
    for partition in [p for p in partitions if p.stream not in known]:
        summary.unrecognised_keys.extend(info.key for info in partitions.pop(partition))

    ordered = sorted(partitions, key=lambda p: (p.stream, p.hour))
    names = [p.watermark_name for p in ordered]
    marks: dict[str, str] = {}
    for start in range(0, len(names), _STATE_BATCH):
        marks.update(stores.state.get_many(names[start : start + _STATE_BATCH]))
    digests: dict[str, str] = {}
    for partition in ordered:
        summary.partitions += 1
        infos = partitions[partition]
        mark = _watermark(infos)
        if marks.get(partition.watermark_name) == mark:
            summary.unchanged += 1
            continue
        done = compact_partition(stores, partition, infos, now=now)
        # The watermark moves after the write: a crash in between recompacts the hour.
        stores.state.put(partition.watermark_name, mark)
        summary.compacted += 1
        summary.lines += done.lines
        summary.rows += done.rows
        summary.duplicates += done.duplicates
        summary.quarantined += done.quarantined
        summary.bytes_written += done.bytes_written
        digests[partition.stream] = mark
        if partition.stream not in summary.changed_streams:
            summary.changed_streams.append(partition.stream)

    for stream, mark in digests.items():
        version = f"{now:.6f}-{mark.rsplit(':', 1)[-1][:12]}"
        if stream == "metrics":
            stores.state.put(layout.VERSION_METRICS, version)
        else:
            stores.state.put(f"{layout.VERSION_EVENTS}:{stream}", version)
    if any(stream != "metrics" for stream in digests):
        stores.state.put(layout.VERSION_EVENTS, f"{now:.6f}")
    return summary


def _now_plus_day(now: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(now, dt.UTC) + dt.timedelta(days=1)


def compact_events(
    stores: Stores, *, since_hour: dt.datetime | None = None, now: float | None = None
) -> CompactSummary:
    """Compact every event partition whose raw batches changed since its last compaction."""
    if since_hour is None:
        prefixes = [layout.RAW_EVENTS]
    else:
        # Day folders sit below the type folder: list each known type's recent days.
        prefixes = [f"{layout.RAW_EVENTS}{event_type}/" for event_type in schema.EVENT_TYPES]
    return _compact(stores, prefixes, since_hour=since_hour, now=now)


def compact_metrics(
    stores: Stores, *, since_hour: dt.datetime | None = None, now: float | None = None
) -> CompactSummary:
    """Compact every metrics hour whose raw batches changed since its last compaction."""
    return _compact(stores, [layout.RAW_METRICS], since_hour=since_hour, now=now)
