"""Screen-time uploads: raw JSON -> validated -> hourly Parquet per customer-day, or quarantine.

One upload is processed by :func:`process_upload` (the CLI), :func:`handle_s3_event` (the
Lambda entry point) or :func:`process_pending` (drains everything not yet handled). All three
are idempotent: the same bytes under the same key are processed or quarantined once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import logging
import re
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa

from data_access import layout
from data_access.queries import APP_DIMENSION
from data_access.stores import ObjectInfo, ObjectMissing, Stores, UploadRecord
from pipeline import schema
from pipeline.schema import Problem, Upload

log = logging.getLogger(__name__)

Status = Literal["processed", "replaced", "duplicate", "quarantined"]

AGGREGATED_SCHEMA = pa.schema(
    [
        # Hours since the upload date's local midnight: 0-23 that day, 24-47 the part of a
        # session after midnight, which counts on the next day.
        pa.field("hour", pa.int8(), nullable=False),
        pa.field("app_id", pa.string(), nullable=False),
        pa.field("seconds", pa.int32(), nullable=False),
        pa.field("sessions", pa.int16(), nullable=False),
        pa.field("pickups", pa.int16(), nullable=False),
        pa.field("notifications", pa.int16(), nullable=False),
    ]
)
# Measured on generated customer-days (~300 sessions -> ~140 rows, 44 KB of JSON): ~1.86 KB
# mean, 26x smaller. At this size fixed costs dominate, so every column earns its place: app
# names and categories live once in the app dimension (records kind "app"), not in every
# file; the day follows from the key and the hour. Statistics (+~300 B) and the Arrow schema
# blob (+~1 KB) are dropped: every column round-trips from Parquet types alone.
PARQUET_OPTIONS: dict[str, object] = {
    "compression": "gzip",
    "compression_level": 9,
    "use_dictionary": ["app_id"],
    "data_page_version": "2.0",
    "write_statistics": False,
    "store_schema": False,
    "row_group_size": 1 << 20,
    # Sorted or narrow integers: delta packing saves ~7 % over plain + gzip.
    "column_encoding": dict.fromkeys(
        ["hour", "seconds", "sessions", "pickups", "notifications"], "DELTA_BINARY_PACKED"
    ),
}
_INT16_MAX = 32_767

# A raw object modified this close to when it was processed is hashed again: S3 reports
# modified times in whole seconds, and the two clocks are not the same clock.
MTIME_SLACK_SECONDS = 2.0

_RAW_KEY = re.compile(r"raw/screen_time/([^/]*)/(\d{4}-\d{2}-\d{2})\.json")


@dataclass(frozen=True)
class ProcessOutcome:
    status: Status
    raw_key: str
    customer_id: str | None  # None when the key does not name one safely
    date: str | None
    reason: str | None  # comma-separated reason codes when quarantined
    bytes: int  # size of the raw upload
    parquet_bytes: int = 0
    content_hash: str = ""


@dataclass
class ProcessSummary:
    processed: int = 0
    replaced: int = 0
    duplicate: int = 0
    quarantined: int = 0
    unchanged: int = 0  # skipped from the listing without reading: already handled
    vanished: int = 0  # listed, then gone before it could be read
    raw_bytes: int = 0
    parquet_bytes: int = 0
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def handled(self) -> int:
        return self.processed + self.replaced + self.duplicate + self.quarantined

    @property
    def uploads_per_second(self) -> float:
        return self.handled / self.seconds if self.seconds > 0 else 0.0

    def add(self, outcome: ProcessOutcome) -> None:
        setattr(self, outcome.status, getattr(self, outcome.status) + 1)
        self.raw_bytes += outcome.bytes
        self.parquet_bytes += outcome.parquet_bytes
        if outcome.status == "quarantined" and outcome.reason:
            for code in outcome.reason.split(","):
                self.quarantined_by_reason[code] = self.quarantined_by_reason.get(code, 0) + 1


class _HourlyOverflow(ValueError):
    """An hourly count does not fit the int16 column."""


def parse_raw_key(raw_key: str) -> tuple[str, str] | Problem:
    """``(customer_id, date)`` from ``raw/screen_time/{customer_id}/{date}.json``, or a problem."""
    match = _RAW_KEY.fullmatch(raw_key)
    if match is None:
        return Problem(schema.BAD_KEY, "key", schema.show_value(raw_key))
    customer_id, date = match.groups()
    if not schema.is_safe_customer_id(customer_id):
        return Problem(schema.UNSAFE_CUSTOMER_ID, "key", schema.show_value(customer_id))
    if schema.parse_iso_date(date) is None:
        return Problem(schema.BAD_DATE, "key", date)
    return customer_id, date


def quarantine_name(raw_key: str, content_hash: str) -> str:
    """Never derived from the customer id in the key: it may be hostile."""
    return hashlib.sha256(raw_key.encode()).hexdigest()[:16] + "-" + content_hash[:12]


def quarantine_keys(raw_key: str, content_hash: str) -> tuple[str, str]:
    """The (raw copy, reason document) keys for one bad upload."""
    name = quarantine_name(raw_key, content_hash)
    base = f"{layout.QUARANTINE_SCREEN_TIME}{name}"
    return f"{base}.json", f"{base}.reason.json"


def aggregate(upload: Upload) -> pa.Table:
    """Seconds, sessions, pickups and notifications per (hour since midnight, app).

    A session's seconds split across the hours it spans; the part after midnight lands in
    hours 24-47. Sessions, pickups and notifications count in the hour the session started.
    """
    totals: dict[tuple[int, str], list[int]] = {}
    for session in upload.sessions:
        start, end = session.start_offset, session.end_offset
        bucket = start // 3600
        first = totals.setdefault((bucket, session.app_id), [0, 0, 0, 0])
        first[1] += 1
        first[2] += session.pickups
        first[3] += session.notifications
        while start < end:
            bucket = start // 3600
            stop = min(end, (bucket + 1) * 3600)
            totals.setdefault((bucket, session.app_id), [0, 0, 0, 0])[0] += stop - start
            start = stop

    keys = sorted(totals)
    counts = list(zip(*(totals[key] for key in keys), strict=True)) if keys else [(), (), (), ()]
    for column in counts[1:]:
        if column and max(column) > _INT16_MAX:
            raise _HourlyOverflow("an hourly count exceeds 32767")
    columns = [
        pa.array([bucket for bucket, _ in keys], pa.int8()),
        pa.array([app_id for _, app_id in keys], pa.string()),
        pa.array(counts[0], pa.int32()),
        pa.array(counts[1], pa.int16()),
        pa.array(counts[2], pa.int16()),
        pa.array(counts[3], pa.int16()),
    ]
    return pa.Table.from_arrays(columns, schema=AGGREGATED_SCHEMA)


def register_apps(stores: Stores, upload: Upload, known: set[str]) -> None:
    """Add apps not seen before to the app dimension; the first name and category win."""
    for session in upload.sessions:
        if session.app_id not in known:
            stores.records.put_new(
                APP_DIMENSION,
                session.app_id,
                {"name": session.app_name, "category": session.category},
            )
            known.add(session.app_id)


def _version_value(now: float, content_hash: str) -> str:
    return f"{now:.6f}-{content_hash[:12]}"


def _quarantine(
    stores: Stores,
    raw_key: str,
    raw: bytes,
    content_hash: str,
    problems: Iterable[Problem],
    now: float,
    *,
    copy_raw: bool = True,
) -> None:
    data_key, reason_key = quarantine_keys(raw_key, content_hash)
    if stores.lake.exists(reason_key):
        return  # already quarantined: the same bad bytes write nothing new
    problems = list(problems)
    document = {
        "raw_key": raw_key,
        "content_hash": content_hash,
        "codes": list(dict.fromkeys(p.code for p in problems)),
        # A pathological upload can hold thousands of problems; the first ones explain it.
        "problems": [p.as_dict() for p in problems[:200]],
        "problem_count": len(problems),
        "raw_bytes": len(raw),
        "quarantined_at": dt.datetime.fromtimestamp(now, dt.UTC).isoformat(),
    }
    if copy_raw:
        stores.lake.write_bytes(data_key, raw)
    # The reason document last: its presence means the quarantine is complete.
    stores.lake.write_bytes(reason_key, json.dumps(document, indent=1).encode())
    stores.state.put(layout.VERSION_QUARANTINE, _version_value(now, content_hash))


def process_upload(
    stores: Stores, raw_key: str, *, now: float | None = None, known_apps: set[str] | None = None
) -> ProcessOutcome:
    """Process the upload stored under ``raw_key`` (a key under ``raw/screen_time/``)."""
    if not raw_key.startswith(layout.RAW_SCREEN_TIME):
        raise ValueError(f"not a screen-time upload key: {raw_key!r}")
    now = time.time() if now is None else now
    parsed = parse_raw_key(raw_key)
    record = None
    if not isinstance(parsed, Problem):
        record = stores.index.get(*parsed)
    try:
        raw = stores.lake.read_bytes(raw_key)
    except ValueError as exc:
        # The lake refuses the key itself (a path escape on a local lake): nothing to copy.
        problem = parsed if isinstance(parsed, Problem) else Problem(schema.BAD_KEY, "key", "")
        problem = Problem(problem.code, problem.path, f"{problem.detail} {exc}".strip())
        content_hash = hashlib.sha256(b"").hexdigest()
        _quarantine(stores, raw_key, b"", content_hash, [problem], now, copy_raw=False)
        return ProcessOutcome("quarantined", raw_key, None, None, problem.code, 0, 0, content_hash)
    return _process_bytes(stores, raw_key, raw, parsed, record, now, known_apps)


def _process_bytes(
    stores: Stores,
    raw_key: str,
    raw: bytes,
    parsed: tuple[str, str] | Problem,
    record: UploadRecord | None,
    now: float,
    known_apps: set[str] | None = None,
) -> ProcessOutcome:
    content_hash = hashlib.sha256(raw).hexdigest()
    if isinstance(parsed, Problem):
        _quarantine(stores, raw_key, raw, content_hash, [parsed], now)
        return ProcessOutcome(
            "quarantined", raw_key, None, None, parsed.code, len(raw), 0, content_hash
        )
    customer_id, date = parsed
    if record is not None and record.content_hash == content_hash:
        return ProcessOutcome(
            "duplicate", raw_key, customer_id, date, None, len(raw), 0, content_hash
        )

    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    result = schema.validate_upload(raw, today=today, key_customer_id=customer_id, key_date=date)
    problems = list(result.problems)
    table = None
    if result.upload is not None:
        try:
            table = aggregate(result.upload)
        except _HourlyOverflow as exc:
            problems.append(Problem(schema.SCHEMA, "sessions", str(exc)))
    if table is None:
        _quarantine(stores, raw_key, raw, content_hash, problems, now)
        reason = ",".join(dict.fromkeys(p.code for p in problems))
        return ProcessOutcome(
            "quarantined", raw_key, customer_id, date, reason, len(raw), 0, content_hash
        )

    register_apps(stores, result.upload, set() if known_apps is None else known_apps)
    object_key = layout.processed_upload_key(customer_id, date)
    # One write to the final key (atomic in the lake): a re-upload replaces the day whole.
    parquet_bytes = stores.lake.write_table(object_key, table, **PARQUET_OPTIONS)
    stores.index.put(
        UploadRecord(
            customer_id=customer_id,
            date=date,
            object_key=object_key,
            raw_key=raw_key,
            raw_bytes=len(raw),
            parquet_bytes=parquet_bytes,
            rows=table.num_rows,
            uploaded_at=now,
            content_hash=content_hash,
        )
    )
    version = _version_value(now, content_hash)
    stores.state.put(layout.customer_version(customer_id), version)
    stores.state.put(layout.VERSION_LATEST_UPLOAD, version)
    status: Status = "processed" if record is None else "replaced"
    return ProcessOutcome(
        status, raw_key, customer_id, date, None, len(raw), parquet_bytes, content_hash
    )


def handle_s3_event(event: dict, stores: Stores) -> list[ProcessOutcome]:
    """Lambda entry point for S3 ``ObjectCreated`` notifications (keys arrive URL-encoded)."""
    outcomes = []
    known_apps: set[str] = set()
    for record in event.get("Records", []):
        name = record.get("eventName", "ObjectCreated:Put")
        if not name.startswith("ObjectCreated"):
            continue
        key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
        if not key.startswith(layout.RAW_SCREEN_TIME):
            log.info("ignoring S3 event for %r: not a screen-time upload", key)
            continue
        try:
            outcomes.append(process_upload(stores, key, known_apps=known_apps))
        except ObjectMissing:
            # Deleted or overwritten-then-deleted before we ran: a later event covers it.
            log.warning("S3 event for %r but the object is gone", key)
    return outcomes


def _quarantined_marks(stores: Stores) -> dict[str, float]:
    """Newest reason-document time per ``sha256(raw_key)[:16]``."""
    marks: dict[str, float] = {}
    for info in stores.lake.list(layout.QUARANTINE_SCREEN_TIME):
        if info.key.endswith(".reason.json"):
            name = info.key.rsplit("/", 1)[-1]
            key_hash = name.split("-", 1)[0]
            marks[key_hash] = max(marks.get(key_hash, 0.0), info.modified)
    return marks


def _customer_of(info: ObjectInfo) -> str:
    return info.key[len(layout.RAW_SCREEN_TIME) :].split("/", 1)[0]


def process_pending(
    stores: Stores, *, progress: Callable[[ProcessOutcome], None] | None = None
) -> ProcessSummary:
    """Process or quarantine every raw upload not yet handled with its current bytes.

    A raw object older than its index record (or its quarantine reason document) is skipped
    without reading it; anything newer is read and hashed, so a corrected re-upload is seen.
    ``progress`` is called with each outcome.
    """
    started = time.perf_counter()
    summary = ProcessSummary()
    marks = _quarantined_marks(stores)
    known_apps: set[str] = set()
    last_now = 0.0
    listing = stores.lake.list(layout.RAW_SCREEN_TIME)
    # The listing is sorted by key, so one index query per customer covers all their days.
    for customer_id, infos in itertools.groupby(listing, key=_customer_of):
        records: dict[str, UploadRecord] = {}
        if schema.is_safe_customer_id(customer_id):
            days = stores.index.customer_days(customer_id, "0000-01-01", "9999-12-31")
            records = {r.date: r for r in days}
        for info in infos:
            parsed = parse_raw_key(info.key)
            record = None if isinstance(parsed, Problem) else records.get(parsed[1])
            if (
                record is not None
                and record.raw_key == info.key
                and info.modified < record.uploaded_at - MTIME_SLACK_SECONDS
            ):
                summary.unchanged += 1
                continue
            key_hash = hashlib.sha256(info.key.encode()).hexdigest()[:16]
            mark = marks.get(key_hash)
            if mark is not None and info.modified < mark - MTIME_SLACK_SECONDS:
                summary.unchanged += 1
                continue
            try:
                raw = stores.lake.read_bytes(info.key)
            except ObjectMissing:
                summary.vanished += 1
                continue
            # Strictly increasing upload times: readers page the index by uploaded_at.
            now = max(time.time(), last_now + 1e-6)
            last_now = now
            outcome = _process_bytes(stores, info.key, raw, parsed, record, now, known_apps)
            summary.add(outcome)
            if progress is not None:
                progress(outcome)
    summary.seconds = time.perf_counter() - started
    return summary
