"""Screen-time uploads: raw JSON -> validated -> hourly rows in date/bucket parts, or quarantine.

The queue says what is new: :func:`drain` (the local worker, ``process --workers N``) and
``lambda_handlers.sqs_handler`` (SQS on AWS) process the keys its messages name as one
batch: one Parquet part per (date, bucket) the batch touches, then one index record per
upload, then :func:`publish` the batch's data versions and counters once. Nothing here
lists the raw zone or reads a customer's history. Delivery is at least once and workers
race, so every write is keyed by content: a part is named by what it holds, and the index
record is written conditionally on the hash it replaces. A duplicate or a racing delivery
of the same bytes changes nothing; rows of a version that lost are dropped by compaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import multiprocessing
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, fields, replace
from typing import Literal, TypeVar

import pyarrow as pa

from data_access import layout
from data_access.queries import APP_DIMENSION, compacted_version
from data_access.settings import DataSettings
from data_access.stores import ObjectMissing, Stores, UploadRecord, parse_upload_notification
from pipeline import schema
from pipeline.schema import Problem, Upload

log = logging.getLogger(__name__)

Status = Literal["processed", "replaced", "duplicate", "quarantined"]
Message = TypeVar("Message", bound=Hashable)  # a queue message, or an SQS record's id

# One session: start and end in seconds after the upload date's local midnight.
SESSION_SPAN = pa.struct(
    [
        pa.field("start", pa.int32(), nullable=False),
        pa.field("end", pa.int32(), nullable=False),
        pa.field("pickups", pa.int16(), nullable=False),
        pa.field("notifications", pa.int16(), nullable=False),
    ]
)
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
        # The sessions that started in the row's hour and app, for the sessions drill-down, so
        # it never needs the raw upload (kept a week). Null in rows written before it existed.
        pa.field("session_spans", pa.list_(SESSION_SPAN)),
    ]
)
# A part holds many customer-days: who and which version each row belongs to, then the
# aggregated counts. Sorted by customer_id with statistics, so a reader finds one customer
# through the footer; dictionaries for the repeated strings.
PART_SCHEMA = pa.schema(
    [
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("content_hash", pa.string(), nullable=False),  # layout.row_hash of the upload
        pa.field("uploaded_at", pa.float64(), nullable=False),  # when its part was written
        *AGGREGATED_SCHEMA,
    ]
)


def as_part(table: pa.Table) -> pa.Table:
    """A stored part's rows as PART_SCHEMA; columns added since it was written are null."""
    for column in PART_SCHEMA:
        if column.name not in table.column_names:
            table = table.append_column(column, pa.nulls(table.num_rows, column.type))
    return table.select(PART_SCHEMA.names).cast(PART_SCHEMA)


PART_OPTIONS: dict[str, object] = {
    "compression": "zstd",
    "use_dictionary": ["customer_id", "content_hash", "app_id"],
    "data_page_version": "2.0",
    "write_statistics": ["customer_id"],
    # ~450 customer-days a row group: a customer is one range read of ~100 KB in a
    # compacted bucket.
    "row_group_size": 1 << 16,
    "column_encoding": dict.fromkeys(
        [
            "hour",
            "seconds",
            "sessions",
            "pickups",
            "notifications",
            *(f"session_spans.list.element.{name}" for name in SESSION_SPAN.names),
        ],
        "DELTA_BINARY_PACKED",
    ),
}
_INT16_MAX = 32_767

# A worker that lost a conditional write to a different version reads the raw object again.
_CONFLICT_RETRIES = 3

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
    new_customer: bool = False  # the customer's first upload: the directory gained them


@dataclass
class ProcessSummary:
    processed: int = 0
    replaced: int = 0
    duplicate: int = 0
    quarantined: int = 0
    vanished: int = 0  # queued, then gone before it could be read
    failed: int = 0  # deliveries released back to the queue after an error
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

    def merge(self, other: ProcessSummary) -> None:
        for name in (f.name for f in fields(self)):
            if name == "quarantined_by_reason":
                reasons = Counter(self.quarantined_by_reason) + Counter(other.quarantined_by_reason)
                self.quarantined_by_reason = dict(reasons)
            elif name != "seconds":
                setattr(self, name, getattr(self, name) + getattr(other, name))


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
    hours 24-47. Sessions, pickups and notifications count in the hour the session started,
    and the session itself is listed there (``session_spans``).
    """
    totals: dict[tuple[int, str], list[int]] = {}
    spans: dict[tuple[int, str], list[dict[str, int]]] = {}
    for session in upload.sessions:
        start, end = session.start_offset, session.end_offset
        bucket = start // 3600
        first = totals.setdefault((bucket, session.app_id), [0, 0, 0, 0])
        first[1] += 1
        first[2] += session.pickups
        first[3] += session.notifications
        spans.setdefault((bucket, session.app_id), []).append(
            {
                "start": start,
                "end": end,
                "pickups": session.pickups,
                "notifications": session.notifications,
            }
        )
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
        pa.array([spans.get(key, []) for key in keys], pa.list_(SESSION_SPAN)),
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
) -> bool:
    """Quarantine with a reason document; False when these bytes were quarantined before."""
    data_key, reason_key = quarantine_keys(raw_key, content_hash)
    if stores.lake.exists(reason_key):
        return False  # the same bad bytes write nothing new
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
    return True


@dataclass(frozen=True)
class _Valid:
    """An upload that passed validation, waiting for its batch's part to be written."""

    raw_key: str
    customer_id: str
    date: str
    raw_bytes: int
    content_hash: str
    table: pa.Table  # AGGREGATED_SCHEMA rows
    previous: UploadRecord | None  # the version the index held when it was read
    expected: str | None  # the hash the index write is conditional on (None: no record)


def process_upload(
    stores: Stores, raw_key: str, *, now: float | None = None, known_apps: set[str] | None = None
) -> ProcessOutcome:
    """Process the upload stored under ``raw_key`` (a key under ``raw/screen_time/``)."""
    if not raw_key.startswith(layout.RAW_SCREEN_TIME):
        raise ValueError(f"not a screen-time upload key: {raw_key!r}")
    outcomes = process_each(stores, [raw_key], set() if known_apps is None else known_apps, now)
    if not outcomes:
        raise ObjectMissing(raw_key)
    publish(stores, outcomes, now)
    return outcomes[0]


def _prepare(
    stores: Stores, raw_key: str, now: float | None, known_apps: set[str]
) -> ProcessOutcome | _Valid:
    """Read and check one upload: its outcome when it is settled here, else what to write."""
    parsed = parse_raw_key(raw_key)
    record = None if isinstance(parsed, Problem) else stores.index.get(*parsed)
    try:
        raw = stores.lake.read_bytes(raw_key)
    except ValueError as exc:
        # The lake refuses the key itself (a path escape on a local lake): nothing to copy.
        problem = parsed if isinstance(parsed, Problem) else Problem(schema.BAD_KEY, "key", "")
        problem = Problem(problem.code, problem.path, f"{problem.detail} {exc}".strip())
        content_hash = hashlib.sha256(b"").hexdigest()
        stamp = time.time() if now is None else now
        new = _quarantine(stores, raw_key, b"", content_hash, [problem], stamp, copy_raw=False)
        status: Status = "quarantined" if new else "duplicate"
        return ProcessOutcome(status, raw_key, None, None, problem.code, 0, 0, content_hash)
    content_hash = hashlib.sha256(raw).hexdigest()
    stamp = time.time() if now is None else now
    if isinstance(parsed, Problem):
        new = _quarantine(stores, raw_key, raw, content_hash, [parsed], stamp)
        status = "quarantined" if new else "duplicate"
        return ProcessOutcome(status, raw_key, None, None, parsed.code, len(raw), 0, content_hash)
    customer_id, date = parsed
    expected = None if record is None else record.content_hash
    if record is None:
        record = _pruned_version(stores, customer_id, date, stamp)
    if record is not None and layout.row_hash(record.content_hash) == layout.row_hash(content_hash):
        return ProcessOutcome(
            "duplicate", raw_key, customer_id, date, None, len(raw), 0, content_hash
        )

    today = dt.datetime.fromtimestamp(stamp, dt.UTC).date()
    result = schema.validate_upload(raw, today=today, key_customer_id=customer_id, key_date=date)
    problems = list(result.problems)
    table = None
    if result.upload is not None:
        try:
            table = aggregate(result.upload)
        except _HourlyOverflow as exc:
            problems.append(Problem(schema.SCHEMA, "sessions", str(exc)))
    if table is None or result.upload is None:
        new = _quarantine(stores, raw_key, raw, content_hash, problems, stamp)
        reason = ",".join(dict.fromkeys(p.code for p in problems))
        status = "quarantined" if new else "duplicate"
        return ProcessOutcome(status, raw_key, customer_id, date, reason, len(raw), 0, content_hash)
    register_apps(stores, result.upload, known_apps)
    return _Valid(raw_key, customer_id, date, len(raw), content_hash, table, record, expected)


def _pruned_version(stores: Stores, customer_id: str, date: str, now: float) -> UploadRecord | None:
    """The version a compacted part holds of a day whose index record has passed its
    retention, as a stand-in record (hash: the part's 16 digits); None when there is none.

    Only a day old enough to have lost its record is looked up: a re-upload of it replaces
    that version, as any re-upload does.
    """
    retention = getattr(stores.index, "retention_days", 0)
    if not retention or layout.index_expires_at(date, 0.0, retention) > now:
        return None
    found = compacted_version(stores, customer_id, date)
    if found is None:
        return None
    part, held = found
    # Folded long ago (uploaded_at 0): the fold subtracts it when this day is replaced.
    return UploadRecord(customer_id, date, part, "", 0, 0, 0, 0.0, held)


def _part_table(items: list[_Valid], stamp: float) -> pa.Table:
    """One (date, bucket)'s rows of a batch, sorted by customer, as PART_SCHEMA."""
    tables = []
    for item in sorted(items, key=lambda v: v.customer_id):
        n = item.table.num_rows
        columns = {
            "customer_id": pa.array([item.customer_id] * n, pa.string()),
            "content_hash": pa.array([layout.row_hash(item.content_hash)] * n, pa.string()),
            "uploaded_at": pa.array([stamp] * n, pa.float64()),
        }
        for name in item.table.column_names:
            columns[name] = item.table.column(name)
        tables.append(pa.table(columns, schema=PART_SCHEMA))
    return pa.concat_tables(tables)


def _commit(
    stores: Stores, items: list[_Valid], now: float | None
) -> tuple[list[ProcessOutcome], list[str]]:
    """Write the batch's parts, then commit each upload; (outcomes, raw keys to try again).

    One part per (date, bucket) the batch touches, named by its content. The index record
    is written only after its part exists, conditionally on the version read: a worker that
    lost the race notes its version as superseded (compaction drops its rows) and reads the
    raw object again.
    """
    groups: dict[tuple[str, int], list[_Valid]] = {}
    for item in items:
        bucket = layout.screen_time_bucket(item.customer_id)
        groups.setdefault((item.date, bucket), []).append(item)
    written: dict[str, tuple[str, int]] = {}  # raw key -> (part key, its share of the bytes)
    for (date, bucket), members in groups.items():
        table = _part_table(members, time.time() if now is None else now)
        name = hashlib.sha256(
            "".join(f"{m.customer_id}:{m.content_hash}" for m in members).encode()
        ).hexdigest()[:16]
        key = layout.screen_time_part_key(date, bucket, name)
        size = stores.lake.write_table(key, table, **PART_OPTIONS)
        for member in members:
            written[member.raw_key] = (key, size // len(members))
    watermark = float(stores.state.get(layout.SCREEN_TIME_FOLD_WATERMARK) or 0)
    outcomes, retry = [], []
    for item in items:
        object_key, share = written[item.raw_key]
        # Stamped at the commit, so the rollup's settle window covers the gap to the write.
        stamp = time.time() if now is None else now
        committed = stores.index.put_if(
            UploadRecord(
                customer_id=item.customer_id,
                date=item.date,
                object_key=object_key,
                raw_key=item.raw_key,
                raw_bytes=item.raw_bytes,
                parquet_bytes=share,
                rows=item.table.num_rows,
                uploaded_at=stamp,
                content_hash=item.content_hash,
                held=held_versions(item.previous, watermark),
            ),
            item.expected,
        )
        if not committed:
            current = stores.index.get(item.customer_id, item.date)
            if current is not None and current.content_hash == item.content_hash:
                outcomes.append(_outcome("duplicate", item, 0))
            else:
                # Its rows are in a part but it never counted: dropped once the fold is past
                # the version that won.
                won = stamp if current is None else current.uploaded_at
                _mark_superseded(stores, item.customer_id, item.date, item.content_hash, won)
                retry.append(item.raw_key)
            continue
        if item.previous is not None:
            previous = item.previous.content_hash
            _mark_superseded(stores, item.customer_id, item.date, previous, stamp)
        # A read before the conditional write: most customers are in the directory already,
        # and a read is cheaper than a refused write (and takes no write lock locally).
        new_customer = (
            item.previous is None
            and stores.records.get(layout.CUSTOMER_DIRECTORY, item.customer_id) is None
            and stores.records.put_new(
                layout.CUSTOMER_DIRECTORY, item.customer_id, {"first_date": item.date}
            )
        )
        status: Status = "processed" if item.previous is None else "replaced"
        outcomes.append(_outcome(status, item, share, new_customer))
    return outcomes, retry


def parse_held(held: str) -> list[tuple[str, float]]:
    """A record's ``held`` list as (content hash, uploaded_at), newest first."""
    found = []
    for entry in filter(None, held.split(";")):
        content_hash, _, at = entry.partition("@")
        found.append((content_hash, float(at)))
    return found


def held_versions(previous: UploadRecord | None, watermark: float) -> str:
    """What a record replacing ``previous`` notes as possibly held by the fleet summaries.

    The summaries hold the newest version the fold had folded. ``previous`` and the versions
    it noted, newest first, down to the first one at or before ``watermark`` (folded for
    sure: nothing older can be held). A stale watermark only keeps the list longer.
    """
    if previous is None:
        return ""
    kept = []
    for content_hash, at in [
        (previous.content_hash, previous.uploaded_at),
        *parse_held(previous.held),
    ]:
        kept.append(f"{content_hash}@{at!r}")
        if at <= watermark:
            break
    return ";".join(kept)


def _outcome(status: Status, item: _Valid, parquet_bytes: int, new: bool = False) -> ProcessOutcome:
    return ProcessOutcome(
        status,
        item.raw_key,
        item.customer_id,
        item.date,
        None,
        item.raw_bytes,
        parquet_bytes,
        item.content_hash,
        new,
    )


def _mark_superseded(
    stores: Stores, customer_id: str, date: str, content_hash: str, replaced_at: float
) -> None:
    """Note a version no longer current, for compaction to drop its rows.

    ``replaced_at``: the upload time of the version that replaced it. Its rows stay until the
    fold is past that: until then the fold may still need them to subtract the version.
    """
    name = f"{customer_id}/{date}/{content_hash}"
    stores.records.put(layout.SUPERSEDED, name, {"at": replaced_at})


def publish(stores: Stores, outcomes: list[ProcessOutcome], now: float | None = None) -> None:
    """After a batch: bump the data versions it changed and add it to this hour's counters.

    Once per batch, not per upload, so parallel workers contend for few writes. Only what
    changed counts (a duplicate adds nothing), so redelivery never counts twice; the
    Health page reads these counters, not the index.
    """
    stamp = time.time() if now is None else now
    changed = [o for o in outcomes if o.status in ("processed", "replaced")]
    quarantined = [o for o in outcomes if o.status == "quarantined"]
    if changed:
        stores.state.put(
            layout.VERSION_LATEST_UPLOAD, _version_value(stamp, changed[-1].content_hash)
        )
    if any(o.new_customer for o in changed):
        stores.state.put(
            layout.VERSION_CUSTOMER_DIRECTORY, _version_value(stamp, changed[-1].content_hash)
        )
    if quarantined:
        stores.state.put(
            layout.VERSION_QUARANTINE, _version_value(stamp, quarantined[-1].content_hash)
        )
    counts: Counter[str] = Counter()
    for outcome in [*changed, *quarantined]:
        counts["quarantined" if outcome.status == "quarantined" else "processed"] += 1
        counts["raw_bytes"] += outcome.bytes
        counts["parquet_bytes"] += outcome.parquet_bytes
    if counts:
        hour = dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%Y-%m-%dT%H")
        stores.state.increment(layout.pipeline_counters(hour), dict(counts))


def process_keys(stores: Stores, keys: Iterable[str]) -> list[ProcessOutcome]:
    """Process the named raw uploads and publish them; a key whose object is gone is skipped."""
    outcomes = process_each(stores, keys, set())
    publish(stores, outcomes)
    return outcomes


def process_each(
    stores: Stores, keys: Iterable[str], known_apps: set[str], now: float | None = None
) -> list[ProcessOutcome]:
    """Process the named raw uploads as one batch, without publishing: the caller does."""
    keys = list(dict.fromkeys(keys))  # a key named twice in a batch is one customer-day
    pending = []
    for key in keys:
        if key.startswith(layout.RAW_SCREEN_TIME):
            pending.append(key)
        else:
            log.info("ignoring %r: not a screen-time upload", key)
    outcomes: list[ProcessOutcome] = []
    for _ in range(_CONFLICT_RETRIES):
        valid = []
        for key in pending:
            try:
                prepared = _prepare(stores, key, now, known_apps)
            except ObjectMissing:
                # Deleted before we ran: nothing to process, and a later upload is queued anew.
                log.warning("queued upload %r is gone", key)
                continue
            if isinstance(prepared, ProcessOutcome):
                outcomes.append(prepared)
            else:
                valid.append(prepared)
        committed, pending = _commit(stores, valid, now)
        outcomes += committed
        if not pending:
            order = {key: n for n, key in enumerate(keys)}
            return sorted(outcomes, key=lambda outcome: order[outcome.raw_key])
    raise RuntimeError(f"{pending}: lost {_CONFLICT_RETRIES} conditional writes in a row")


def process_batch(
    stores: Stores, messages: list[tuple[Message, tuple[str, ...]]], known_apps: set[str]
) -> tuple[dict[Message, list[ProcessOutcome]], dict[Message, str]]:
    """Process the keys of several messages as one batch: (outcomes, failure reasons).

    One batch means one part per (date, bucket) for all of them. When the batch fails, each
    message is tried on its own, so one bad delivery cannot hold back the others.
    """
    every = [key for _, keys in messages for key in keys]
    try:
        outcomes = process_each(stores, every, known_apps)
    except Exception:
        if len(messages) == 1:
            message, _ = messages[0]
            log.exception("processing %s failed", messages[0][1])
            return {}, {message: _reason(sys.exc_info()[1])}
        log.warning("a batch of %d messages failed: trying them one at a time", len(messages))
        found: dict[Message, list[ProcessOutcome]] = {}
        failed: dict[Message, str] = {}
        for message, keys in messages:
            one, problem = process_batch(stores, [(message, keys)], known_apps)
            found.update(one)
            failed.update(problem)
        return found, failed
    by_key = {outcome.raw_key: outcome for outcome in outcomes}
    found = {}
    for message, keys in messages:
        found[message] = [by_key[key] for key in dict.fromkeys(keys) if key in by_key]
        # A key in a later message of the same batch was handled once: a duplicate there.
        for outcome in found[message]:
            by_key[outcome.raw_key] = replace(outcome, status="duplicate", parquet_bytes=0)
    return found, {}


def _reason(exc: BaseException | None) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def handle_s3_event(event: dict, stores: Stores) -> list[ProcessOutcome]:
    """Process the uploads an S3 notification names, as a queue message body carries it."""
    keys, problem = parse_upload_notification(json.dumps(event))
    if problem is not None:
        raise ValueError(problem)
    return process_keys(stores, keys)


def drain(
    stores: Stores,
    *,
    batch: int = 32,
    visibility_seconds: float = 300.0,
    progress: Callable[[ProcessOutcome], None] | None = None,
    stop: threading.Event | None = None,
) -> ProcessSummary:
    """Process queued uploads until the queue has nothing visible (or ``stop`` is set).

    A message is deleted only after its uploads are committed; one that fails is released
    with its reason and comes back, and after too many attempts lands in the dead letters.
    """
    started = time.perf_counter()
    summary = ProcessSummary()
    known_apps: set[str] = set()
    while stop is None or not stop.is_set():
        messages = stores.queue.receive(batch, visibility_seconds)
        if not messages:
            break
        batches = [(m, m.keys) for m in messages if m.problem is None]
        outcomes, failures = process_batch(stores, batches, known_apps)
        for message in messages:
            if message.problem is not None:
                failures[message] = message.problem
        for message, reason in failures.items():
            summary.failed += 1
            stores.queue.release(message, reason)
        done = [m for m in messages if m not in failures]
        committed: list[ProcessOutcome] = []
        for message in done:
            found = outcomes.get(message, [])
            summary.vanished += len(message.keys) - len(found)
            for outcome in found:
                summary.add(outcome)
                if progress is not None:
                    progress(outcome)
            committed += found
        # Versions and counters once per batch, before the messages go: a worker that dies
        # in between leaves them to a redelivery, which finds duplicates.
        publish(stores, committed)
        stores.queue.delete(done)
    summary.seconds = time.perf_counter() - started
    return summary


def _drain_in_child(settings: DataSettings, batch: int) -> ProcessSummary:
    from data_access.factory import build_stores

    # One process per core already: Arrow's own thread pool would only contend with them.
    pa.set_cpu_count(1)
    return drain(build_stores(settings), batch=batch)


def default_workers() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def drain_parallel(settings: DataSettings, *, workers: int, batch: int = 32) -> ProcessSummary:
    """``drain`` in ``workers`` processes at once, each with its own stores."""
    started = time.perf_counter()
    summary = ProcessSummary()
    # Spawned, not forked: a child must not inherit the parent's SQLite or HTTP connections.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(_drain_in_child, settings, batch) for _ in range(workers)]
        for future in futures:
            summary.merge(future.result())
    summary.seconds = time.perf_counter() - started
    return summary
