"""The storage protocols every backend implements, and the records they hold.

Two implementations exist: ``local`` (a folder and SQLite) and ``aws`` (S3 and
DynamoDB). ``tests/contract`` runs the same test class against both.
"""

from __future__ import annotations

import io
import json
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


class StoreUnavailable(RuntimeError):
    """A backing store could not be reached or answered with an error."""


class ObjectMissing(KeyError):
    """The lake holds no object under the key."""


def concat_tables(tables: list[pa.Table | None]) -> pa.Table:
    """Concatenate what was found; an empty table (no columns) when nothing was."""
    found = [table for table in tables if table is not None]
    if not found:
        return pa.table({})
    return pa.concat_tables(found, promote_options="permissive")


class TablesFromBytes:
    """The Lake methods both lakes derive from their own ``read_tables`` and ``write_bytes``."""

    if TYPE_CHECKING:

        def read_tables(
            self, keys: list[str], columns: list[str] | None = None
        ) -> list[pa.Table | None]: ...

        def write_bytes(self, key: str, data: bytes) -> None: ...

    def read_table(self, keys: list[str], columns: list[str] | None = None) -> pa.Table:
        return concat_tables(self.read_tables(keys, columns))

    def write_table(self, key: str, table: pa.Table, **parquet_options: object) -> int:
        sink = io.BytesIO()
        pq.write_table(table, sink, **parquet_options)
        data = sink.getvalue()
        self.write_bytes(key, data)
        return len(data)


def parquet_rows_where(
    source: object, column: str, values: list[str], columns: list[str] | None = None
) -> pa.Table:
    """The rows of a Parquet file (a seekable binary file) whose ``column`` is in ``values``.

    Row groups whose min/max statistics exclude every value are not read; a file written
    without statistics is read whole and filtered. Of ``columns``, those the file has.
    """
    wanted = sorted(set(values))
    parquet = pq.ParquetFile(source, pre_buffer=True)
    metadata = parquet.metadata
    names = parquet.schema_arrow.names
    if column not in names:
        empty = parquet.schema_arrow.empty_table()
        return empty if columns is None else empty.select([c for c in columns if c in names])
    index = names.index(column)
    groups = []
    for number in range(metadata.num_row_groups):
        stats = metadata.row_group(number).column(index).statistics
        if (
            stats is None
            or not stats.has_min_max
            or any(stats.min <= value <= stats.max for value in wanted)
        ):
            groups.append(number)
    present = None if columns is None else [name for name in columns if name in names]
    read = present if present is None or column in present else [*present, column]
    table = parquet.read_row_groups(groups, columns=read, use_threads=False)
    table = table.filter(pc.is_in(table[column], pa.array(wanted, table.schema.field(column).type)))
    return table if present is None else table.select(present)


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: float  # epoch seconds


@dataclass(frozen=True)
class UploadRecord:
    """One processed customer-day, as the metadata index holds it."""

    customer_id: str
    date: str  # ISO date, YYYY-MM-DD
    object_key: str  # processed Parquet key
    raw_key: str
    raw_bytes: int
    parquet_bytes: int
    rows: int
    uploaded_at: float  # epoch seconds the upload was processed
    content_hash: str  # sha256 of the raw bytes
    # The versions it replaced that the fleet summaries may still hold, newest first, as
    # "hash@uploaded_at;...": the fold subtracts the newest one it had folded.
    held: str = ""


@runtime_checkable
class Lake(Protocol):
    """Object storage addressed by slash-separated keys relative to the lake root."""

    def read_bytes(self, key: str) -> bytes: ...

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write atomically: readers see the old object or the new one, never a part."""

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, recursively, sorted by key."""

    def read_table(self, keys: list[str], columns: list[str] | None = None) -> pa.Table:
        """Read and concatenate Parquet objects; a missing key is skipped."""

    def read_tables(
        self, keys: list[str], columns: list[str] | None = None
    ) -> list[pa.Table | None]:
        """Read Parquet objects one table per key, in order; None for a missing key."""

    def write_table(self, key: str, table: pa.Table, **parquet_options: object) -> int:
        """Write a Parquet object atomically and return its size in bytes."""

    def read_where(
        self, key: str, column: str, values: list[str], columns: list[str] | None = None
    ) -> pa.Table | None:
        """The rows of one Parquet object whose ``column`` is in ``values``; None if missing.

        Reads the footer and only the row groups whose statistics can hold a value: one or
        two range reads for a customer in a large sorted part.
        """


@runtime_checkable
class CacheTable(Protocol):
    """Query results by key with a time to live. An expired entry is a miss."""

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes, ttl_seconds: int) -> None: ...


@runtime_checkable
class MetadataIndex(Protocol):
    """Processed customer-days by (customer_id, date), and by upload time."""

    def put(self, record: UploadRecord) -> None: ...

    def get(self, customer_id: str, date: str) -> UploadRecord | None: ...

    def customer_days(self, customer_id: str, start: str, end: str) -> list[UploadRecord]:
        """Records with ``start <= date <= end``, sorted by date."""

    def uploaded_since(self, since: float, limit: int = 10_000) -> list[UploadRecord]:
        """Records with ``uploaded_at > since``, oldest first."""

    def put_if(self, record: UploadRecord, expected_hash: str | None) -> bool:
        """Write only if the stored record's content hash is ``expected_hash`` (None: no record).

        False when another writer got there first: the conditional write that makes a
        duplicate delivery or a racing worker change nothing.
        """

    def prune_expired(self, now: float) -> int:
        """Delete records past their retention (``DataSettings.index_retention_days``); the
        number deleted. DynamoDB's TTL does it by itself (0). Either way a record past its
        retention reads as absent."""


@runtime_checkable
class StateStore(Protocol):
    """Small named values: data versions per scope and job watermarks."""

    def get(self, name: str) -> str | None: ...

    def put(self, name: str, value: str) -> None: ...

    def get_many(self, names: list[str]) -> dict[str, str]: ...

    def increment(self, name: str, amounts: dict[str, int]) -> None:
        """Add ``amounts`` to the named counters atomically (concurrent writers all count)."""

    def counters(self, names: list[str]) -> dict[str, dict[str, int]]:
        """The counters under each name that has any; absent names are left out."""


@runtime_checkable
class RecordStore(Protocol):
    """Small JSON documents by (kind, key): audit entries, API keys, alerts, deliveries,
    signed-in sessions.

    Keys sort as strings, so time-ordered keys (e.g. ``f"{ts:017.6f}-{id}"``) list in time order.
    """

    def put(self, kind: str, key: str, doc: dict, *, expires_at: float | None = None) -> None:
        """Write the document; with ``expires_at`` (epoch seconds) it is absent from then on."""

    def put_new(self, kind: str, key: str, doc: dict) -> bool:
        """Write only if the key is absent; False when it already exists (conditional write)."""

    def replace(self, kind: str, key: str, doc: dict, *, expires_at: float | None = None) -> bool:
        """Write only if a live (unexpired) record is there; False when there is none, so a
        record deleted meanwhile stays deleted (conditional write)."""

    def get(self, kind: str, key: str) -> dict | None:
        """The document, or None when absent or expired (expired records may linger until
        swept, DynamoDB's TTL deletes them only eventually, but are never returned)."""

    def delete(self, kind: str, key: str) -> None: ...

    def scan(
        self, kind: str, *, prefix: str = "", limit: int = 1000, newest_first: bool = False
    ) -> list[tuple[str, dict]]:
        """(key, doc) pairs of one kind whose key starts with ``prefix``, in key order."""


@dataclass(frozen=True)
class QueueMessage:
    """One delivery of a message naming raw upload keys."""

    id: str  # stable across deliveries of the same message
    receipt: str  # what delete and release need; changes with every delivery
    keys: tuple[str, ...]  # raw keys, URL-decoded; empty for a test event
    attempts: int  # deliveries so far, this one included
    problem: str | None = None  # why the body could not be read, for a poison message


def parse_upload_notification(body: str) -> tuple[tuple[str, ...], str | None]:
    """(raw keys, problem) from a queue message body in S3's event notification shape.

    S3 URL-encodes keys; ``s3:TestEvent`` (sent when a notification is configured) and
    events other than ObjectCreated name no keys. A body that is not such a document is a
    problem: the message is poison and ends in the dead-letter queue with this reason.
    """
    try:
        document = json.loads(body)
    except ValueError as exc:
        return (), f"body is not JSON: {exc}"
    if not isinstance(document, dict):
        return (), "body is not a JSON object"
    if document.get("Event") == "s3:TestEvent":
        return (), None
    records = document.get("Records")
    if not isinstance(records, list):
        return (), "body has no Records list"
    keys = []
    for record in records:
        try:
            if str(record.get("eventName", "ObjectCreated:")).startswith("ObjectCreated"):
                keys.append(urllib.parse.unquote_plus(record["s3"]["object"]["key"]))
        except (AttributeError, KeyError, TypeError):
            return (), "a record names no s3.object.key"
    return tuple(keys), None


@runtime_checkable
class UploadQueue(Protocol):
    """Durable, at-least-once queue of raw uploads to process (SQS on AWS, SQLite locally).

    A received message is invisible to other receivers for ``visibility_seconds``; one that
    is neither deleted nor released in time is delivered again. A message released
    ``max_attempts`` times moves to the dead-letter queue with the last reason.
    """

    def send(self, keys: list[str]) -> None: ...

    def receive(
        self, max_messages: int = 10, visibility_seconds: float = 300.0
    ) -> list[QueueMessage]: ...

    def delete(self, messages: list[QueueMessage]) -> None: ...

    def release(self, message: QueueMessage, reason: str) -> None:
        """Processing failed: deliver again later, or dead-letter it once out of attempts."""

    def depth(self) -> int:
        """Messages waiting or in flight (approximate on SQS)."""

    def dead_letters(self, limit: int = 100) -> list[tuple[str, str]]:
        """(message id, reason) of dead-lettered messages."""


@dataclass(frozen=True)
class Stores:
    lake: Lake
    cache: CacheTable
    index: MetadataIndex
    state: StateStore
    records: RecordStore
    queue: UploadQueue
