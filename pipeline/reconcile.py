"""Audit: every raw input is accounted for, and nothing processed points at nothing.

Screen time: each raw upload is processed with its current bytes (the index holds its
content hash and the Parquet object exists) or quarantined with a reason document for that
key and hash; no index record points at a missing object; no processed object lacks a record.
Events: each valid raw line's event id is in its hour's Parquet, each bad line has a reason
document, and no event id appears twice in processed Parquet.

Reads every raw object, one customer at a time: run it as an audit, not on the hot path.
``requeue_missed`` is the catch-up for a lost queue message, and the only other listing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from data_access import layout
from data_access.stores import ObjectInfo, ObjectMissing, Stores, UploadRecord
from pipeline import events, process, schema

_INDEX_PAGE = 10_000
# A raw object modified this close to when it was handled is queued again: S3 reports
# modified times in whole seconds, and the two clocks are not the same clock.
MTIME_SLACK_SECONDS = 2.0
_LISTED = 50  # keys kept per problem list: the counts say how many there are


@dataclass
class ReconcileReport:
    raw_uploads: int = 0
    processed: int = 0
    quarantined: int = 0
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    unhandled: list[str] = field(default_factory=list)  # raw keys neither processed nor quarantined
    missing_objects: list[str] = field(default_factory=list)  # indexed Parquet keys that are gone
    orphaned_objects: list[str] = field(default_factory=list)  # Parquet with no index record
    events_raw_lines: int = 0
    events_processed_rows: int = 0
    events_quarantined: int = 0
    events_duplicates_collapsed: int = 0
    events_missing: list[str] = field(default_factory=list)  # "raw_key:line event_id"
    events_unquarantined: list[str] = field(default_factory=list)  # "raw_key:line"
    events_duplicated: list[str] = field(default_factory=list)  # "type event_id"
    unrecognised_keys: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.unhandled
            or self.missing_objects
            or self.orphaned_objects
            or self.events_missing
            or self.events_unquarantined
            or self.events_duplicated
            or self.unrecognised_keys
        )

    def problems(self) -> list[str]:
        """One line per failed check, for logs and the CLI."""
        checks = {
            "raw uploads neither processed nor quarantined": self.unhandled,
            "index records pointing at missing objects": self.missing_objects,
            "processed objects without an index record": self.orphaned_objects,
            "valid event lines missing from processed": self.events_missing,
            "bad event lines without a reason document": self.events_unquarantined,
            "event ids processed more than once": self.events_duplicated,
            "raw keys matching no known layout": self.unrecognised_keys,
        }
        return [f"{name}: {', '.join(keys[:5])}" for name, keys in checks.items() if keys]


def reconcile(stores: Stores) -> ReconcileReport:
    report = ReconcileReport()
    _reconcile_screen_time(stores, report)
    _reconcile_events(stores, report)
    return report


def _note(items: list[str], item: str) -> None:
    if len(items) < _LISTED:
        items.append(item)


def _customer_of(info: ObjectInfo, prefix: str) -> str:
    return info.key[len(prefix) :].split("/", 1)[0]


def _by_customer(stores: Stores, prefix: str) -> Iterator[tuple[str, list[ObjectInfo], dict]]:
    """The listing under ``prefix`` a customer at a time, with that customer's index records.

    One customer's objects and records in memory at a time, whatever the lake holds.
    """
    for customer_id, infos in itertools.groupby(
        stores.lake.list(prefix), key=lambda info: _customer_of(info, prefix)
    ):
        records = {}
        if schema.is_safe_customer_id(customer_id):
            days = stores.index.customer_days(customer_id, "0000-01-01", "9999-12-31")
            records = {r.date: r for r in days}
        yield customer_id, list(infos), records


def _index_pages(stores: Stores) -> Iterator[list[UploadRecord]]:
    since = -1.0
    while True:
        page = stores.index.uploaded_since(since, limit=_INDEX_PAGE)
        yield page
        if len(page) < _INDEX_PAGE:
            return
        since = page[-1].uploaded_at


def requeue_missed(stores: Stores) -> int:
    """Queue every raw upload not handled with its current bytes; the number queued.

    The catch-up for a lost notification: the one place that lists the raw zone. An object
    newer than its record (or reason document) is queued, so a corrected re-upload is seen.
    """
    marks: dict[str, float] = {}
    for info in stores.lake.list(layout.QUARANTINE_SCREEN_TIME):
        if info.key.endswith(".reason.json"):
            key_hash = info.key.rsplit("/", 1)[-1].split("-", 1)[0]
            marks[key_hash] = max(marks.get(key_hash, 0.0), info.modified)
    queued = 0
    for _, infos, records in _by_customer(stores, layout.RAW_SCREEN_TIME):
        missed = []
        for info in infos:
            parsed = process.parse_raw_key(info.key)
            record = None if isinstance(parsed, schema.Problem) else records.get(parsed[1])
            handled_at = record.uploaded_at if record is not None else 0.0
            key_hash = hashlib.sha256(info.key.encode()).hexdigest()[:16]
            handled_at = max(handled_at, marks.get(key_hash, 0.0))
            # S3 reports modified times in whole seconds, and it is not the worker's clock.
            if info.modified >= handled_at - MTIME_SLACK_SECONDS:
                missed.append(info.key)
        stores.queue.send(missed)
        queued += len(missed)
    return queued


def _reconcile_screen_time(stores: Stores, report: ReconcileReport) -> None:
    lake = stores.lake
    reasons = {
        info.key
        for info in lake.list(layout.QUARANTINE_SCREEN_TIME)
        if info.key.endswith(".reason.json")
    }
    for _, infos, records in _by_customer(stores, layout.RAW_SCREEN_TIME):
        for info in infos:
            try:
                raw = lake.read_bytes(info.key)
            except ObjectMissing:
                continue
            report.raw_uploads += 1
            content_hash = hashlib.sha256(raw).hexdigest()
            parsed = process.parse_raw_key(info.key)
            record = None if isinstance(parsed, schema.Problem) else records.get(parsed[1])
            if record is not None and record.content_hash == content_hash:
                report.processed += 1
                continue
            _, reason_key = process.quarantine_keys(info.key, content_hash)
            if reason_key in reasons:
                report.quarantined += 1
                for code in _reason_codes(stores, reason_key):
                    report.quarantined_by_reason[code] = (
                        report.quarantined_by_reason.get(code, 0) + 1
                    )
            else:
                _note(report.unhandled, info.key)

    # Every record, including those whose raw upload has expired, points at an object.
    for page in _index_pages(stores):
        for record in page:
            if not lake.exists(record.object_key):
                _note(report.missing_objects, record.object_key)

    # A processed object is the indexed version, or the one the summaries still hold.
    for customer_id, infos, records in _by_customer(stores, layout.PROCESSED_SCREEN_TIME):
        folded = stores.state.get_many(
            [layout.folded_version(customer_id, date) for date in records]
        )
        kept = {r.object_key for r in records.values()} | {
            layout.processed_upload_key(customer_id, date, held)
            for date in records
            if (held := folded.get(layout.folded_version(customer_id, date)))
        }
        for info in infos:
            if info.key not in kept and not _awaiting_sweep(stores, info.key):
                _note(report.orphaned_objects, info.key)


def _awaiting_sweep(stores: Stores, object_key: str) -> bool:
    """A replaced version noted for the rollup's sweep is not an orphan yet."""
    customer_id, date, name = object_key[len(layout.PROCESSED_SCREEN_TIME) :].split("/")
    prefix = f"{customer_id}/{date}/{name.removesuffix('.parquet')}"
    return bool(stores.records.scan(layout.SUPERSEDED, prefix=prefix, limit=1))


def _reason_codes(stores: Stores, reason_key: str) -> list[str]:
    try:
        return list(json.loads(stores.lake.read_bytes(reason_key))["codes"])
    except (ObjectMissing, ValueError, KeyError, TypeError):
        return ["unreadable_reason"]


def _reconcile_events(stores: Stores, report: ReconcileReport) -> None:
    lake = stores.lake
    partitions, unrecognised = events.list_partitions(lake, [layout.RAW_EVENTS])
    for key in unrecognised:
        _note(report.unrecognised_keys, key)
    for partition, infos in sorted(partitions.items(), key=lambda item: item[0].path):
        if partition.stream not in schema.EVENT_TYPES:
            for info in infos:
                _note(report.unrecognised_keys, info.key)
            continue
        table = lake.read_table([partition.output_key], ["event_id"])
        processed = set(table.column("event_id").to_pylist()) if table.num_rows else set()
        seen: set[str] = set()
        for line in events.iter_lines(lake, partition, infos):
            report.events_raw_lines += 1
            record = line.result.record
            where = f"{line.raw_key}:{line.line_number}"
            if record is None:
                report.events_quarantined += 1
                key = events.quarantine_line_key(partition, line.batch, line.line_number)
                if not lake.exists(key):
                    _note(report.events_unquarantined, where)
            elif record["event_id"] in seen:
                report.events_duplicates_collapsed += 1
            else:
                seen.add(record["event_id"])
                if record["event_id"] not in processed:
                    _note(report.events_missing, f"{where} {record['event_id']}")

    # Across all processed hours, including those whose raw batches have expired.
    by_type = itertools.groupby(
        lake.list(layout.PROCESSED_EVENTS),
        key=lambda info: info.key[len(layout.PROCESSED_EVENTS) :].split("/", 1)[0],
    )
    for event_type, infos in by_type:
        counts: Counter[str] = Counter()
        for info in infos:
            table = lake.read_table([info.key], ["event_id"])
            if table.num_rows:
                counts.update(table.column("event_id").to_pylist())
        report.events_processed_rows += counts.total()
        for event_id, count in counts.items():
            if count > 1:
                _note(report.events_duplicated, f"{event_type} {event_id}")
