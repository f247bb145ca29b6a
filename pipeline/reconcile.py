"""Audit: every raw input is accounted for, and nothing processed points at nothing.

Screen time: each raw upload is processed with its current bytes (the index holds its
content hash) or quarantined with a reason document for that key and hash; every indexed
version with rows is found where readers look for it (its part, or its date's compacted
part); every version held in a part is the indexed one or noted as superseded for
compaction to drop; after compaction a customer-day is in one part only.
Events: each valid raw line's event id is in its hour's Parquet, each bad line has a reason
document, and no event id appears twice in processed Parquet.

Reads every raw object, one customer at a time: run it as an audit, not on the hot path.
``requeue_missed`` is the catch-up for a lost queue message, and the only other listing.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from data_access import layout
from data_access.queries import compacted_part, compaction_manifests, read_customer_days
from data_access.stores import ObjectInfo, ObjectMissing, Stores, UploadRecord
from pipeline import events, process, schema

_INDEX_PAGE = 10_000
# A raw object modified this close to when it was handled is queued again: S3 reports
# modified times in whole seconds, and the two clocks are not the same clock.
MTIME_SLACK_SECONDS = 2.0
_LISTED = 50  # keys kept per problem list: the counts say how many there are
_RESOLVE_BATCH = 1_000  # index records resolved together: each part is read once per batch


@dataclass
class ReconcileReport:
    raw_uploads: int = 0
    processed: int = 0
    quarantined: int = 0
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    unhandled: list[str] = field(default_factory=list)  # raw keys neither processed nor quarantined
    # "customer/date" of indexed versions with rows that no part holds
    missing_objects: list[str] = field(default_factory=list)
    # "part customer hash": rows of a version neither indexed nor awaiting compaction
    orphaned_objects: list[str] = field(default_factory=list)
    # "customer/date": the current version in a compacted part and in another part as well
    duplicated_days: list[str] = field(default_factory=list)
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
            or self.duplicated_days
            or self.events_missing
            or self.events_unquarantined
            or self.events_duplicated
            or self.unrecognised_keys
        )

    def problems(self) -> list[str]:
        """One line per failed check, for logs and the CLI."""
        checks = {
            "raw uploads neither processed nor quarantined": self.unhandled,
            "indexed customer-days whose rows no part holds": self.missing_objects,
            "processed rows of versions without an index record": self.orphaned_objects,
            "customer-days held twice after compaction": self.duplicated_days,
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
    compacted = _Compacted(stores)
    for _, infos, records in _by_customer(stores, layout.RAW_SCREEN_TIME):
        missed = []
        for info in infos:
            parsed = process.parse_raw_key(info.key)
            record = None if isinstance(parsed, schema.Problem) else records.get(parsed[1])
            handled_at = record.uploaded_at if record is not None else 0.0
            if record is None and not isinstance(parsed, schema.Problem):
                # Its record may have passed its retention: an upload that landed before its
                # date was compacted was handled by then (this catch-up runs daily).
                handled_at = compacted.at(parsed[1])
            key_hash = hashlib.sha256(info.key.encode()).hexdigest()[:16]
            handled_at = max(handled_at, marks.get(key_hash, 0.0))
            # S3 reports modified times in whole seconds, and it is not the worker's clock.
            if info.modified >= handled_at - MTIME_SLACK_SECONDS:
                missed.append(info.key)
        stores.queue.send(missed)
        queued += len(missed)
    return queued


class _Compacted:
    """Dates' compaction manifests and their parts' versions, read once per run."""

    def __init__(self, stores: Stores) -> None:
        self._stores = stores
        self._manifests: dict[str, dict] = {}

    def manifest(self, date: str) -> dict:
        if date not in self._manifests:
            found = compaction_manifests(self._stores, [date]).get(date)
            self._manifests[date] = found or {"at": 0.0, "parts": {}}
        return self._manifests[date]

    def at(self, date: str) -> float:
        return float(self.manifest(date)["at"])

    def part(self, customer_id: str, date: str) -> str | None:
        return compacted_part(self.manifest(date), customer_id)

    @functools.lru_cache(maxsize=64)  # noqa: B019 - one instance per run
    def _versions(self, key: str) -> dict[str, str]:
        table = self._stores.lake.read_table([key], ["customer_id", "content_hash"])
        if not table.num_rows:
            return {}
        columns = (table["customer_id"].to_pylist(), table["content_hash"].to_pylist())
        return dict(zip(*columns, strict=True))

    def version(self, customer_id: str, date: str) -> str | None:
        """The row hash of the version the date's compacted part holds for the customer."""
        key = self.part(customer_id, date)
        return self._versions(key).get(customer_id) if key else None


def _reconcile_screen_time(stores: Stores, report: ReconcileReport) -> None:
    lake = stores.lake
    compacted = _Compacted(stores)
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
            # A record past its retention: the compacted part holds the processed day.
            pruned = record is None and not isinstance(parsed, schema.Problem)
            if pruned and compacted.version(*parsed) == layout.row_hash(content_hash):
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

    # Every record, including those whose raw upload has expired, has its rows somewhere.
    for page in _index_pages(stores):
        for start in range(0, len(page), _RESOLVE_BATCH):
            chunk = page[start : start + _RESOLVE_BATCH]
            for record, rows in zip(chunk, read_customer_days(stores, chunk), strict=True):
                if rows is None and record.rows > 0:
                    _note(report.missing_objects, f"{record.customer_id}/{record.date}")
    _reconcile_parts(stores, report)


def _partition_of(key: str) -> str:
    return key.rsplit("/", 1)[0]


def _reconcile_parts(stores: Stores, report: ReconcileReport) -> None:
    """Each (date, bucket) at a time: every version in a part is the indexed one, or noted
    as superseded for compaction to drop; a compacted part's versions are nowhere else."""
    for partition, infos in itertools.groupby(
        stores.lake.list(layout.PROCESSED_SCREEN_TIME), key=lambda info: _partition_of(info.key)
    ):
        keys = [info.key for info in infos]
        if not keys[0].startswith(layout.SCREEN_TIME_PARTS):
            for key in keys:  # not a part of the date/bucket layout
                _note(report.orphaned_objects, key)
            continue
        date = partition.split("date=", 1)[1].split("/", 1)[0]
        manifest = compaction_manifests(stores, [date]).get(date, {})
        compacted = set(manifest.get("parts", {}).values())
        holders: dict[tuple[str, str], list[str]] = {}
        for key in keys:
            table = stores.lake.read_table([key], ["customer_id", "content_hash"])
            if not table.num_rows:
                continue
            pairs = table.group_by(["customer_id", "content_hash"]).aggregate([])
            for pair in zip(*(pairs[c].to_pylist() for c in pairs.column_names), strict=True):
                holders.setdefault(pair, []).append(key)
        for (customer_id, row_hash), where in holders.items():
            record = stores.index.get(customer_id, date)
            if record is not None and layout.row_hash(record.content_hash) == row_hash:
                if len(where) > 1 and compacted.intersection(where):
                    _note(report.duplicated_days, f"{customer_id}/{date}")
            elif record is None and set(where) <= compacted:
                continue  # compacted; its record has passed its retention
            elif not stores.records.scan(
                layout.SUPERSEDED, prefix=f"{customer_id}/{date}/{row_hash}", limit=1
            ):
                _note(report.orphaned_objects, f"{where[0]} {customer_id} {row_hash}")


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
