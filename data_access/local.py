"""Embedded default backend: a local folder for the lake, SQLite for everything else."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import astuple
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.parquet as pq

from data_access import layout
from data_access.stores import (
    ObjectInfo,
    ObjectMissing,
    QueueMessage,
    StoreUnavailable,
    TablesFromBytes,
    UploadRecord,
    parquet_rows_where,
)


def _check_key(key: str) -> str:
    """Refuse keys that could leave the lake root."""
    path = PurePosixPath(key)
    too_long = any(len(part.encode()) > 255 for part in path.parts)  # NAME_MAX
    if (
        not key
        or path.is_absolute()
        or ".." in path.parts
        or "\x00" in key
        or "\\" in key
        or too_long
    ):
        raise ValueError(f"unsafe lake key: {key!r}")
    return key


class LocalLake(TablesFromBytes):
    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def read_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectMissing(key) from None
        except OSError as exc:
            raise StoreUnavailable(f"lake read {key}: {exc}") from exc

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the target and rename: readers never see half a file.
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        # Walk only the deepest folder the prefix names, then filter by the rest of the prefix.
        folder, _, _ = prefix.rpartition("/")
        base = self.root / _check_key(folder) if folder else self.root
        if not base.is_dir():
            return iter(())
        found = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in filenames:
                if name.startswith("."):
                    continue
                full = Path(dirpath, name)
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    stat = full.stat()
                    found.append(ObjectInfo(key, stat.st_size, stat.st_mtime))
        found.sort(key=lambda info: info.key)
        return iter(found)

    def read_tables(
        self, keys: list[str], columns: list[str] | None = None
    ) -> list[pa.Table | None]:
        tables: list[pa.Table | None] = []
        for key in keys:
            try:
                data = self.read_bytes(key)
            except ObjectMissing:
                tables.append(None)
                continue
            # The objects are small: one read and a single-threaded decode cost half of
            # pq.read_table's dataset machinery (measured: 0.46 ms against 1.1 ms a file).
            reader = pq.ParquetFile(pa.BufferReader(data))
            tables.append(reader.read(columns=columns, use_threads=False))
        return tables

    def read_where(
        self, key: str, column: str, values: list[str], columns: list[str] | None = None
    ) -> pa.Table | None:
        try:
            with open(self._path(key), "rb") as handle:
                return parquet_rows_where(handle, column, values, columns)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StoreUnavailable(f"lake read {key}: {exc}") from exc


class _Sqlite:
    """One connection per thread on a WAL database, so gunicorn threads read concurrently."""

    schema: str = ""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.executescript(self.schema)

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc
            self._local.conn = conn
        return conn

    def _execute(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        try:
            return self._connect().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc

    def _write_many(self, *statements: tuple[str, list[tuple]]) -> None:
        """Each (sql, rows) for every row, in one transaction: one commit and one wait for
        the write lock, however many rows (parallel workers share that lock)."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, rows in statements:
                    conn.executemany(sql, rows)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc


class SqliteCacheTable(_Sqlite):
    schema = """
    CREATE TABLE IF NOT EXISTS cache (
        key TEXT PRIMARY KEY, value BLOB NOT NULL, expires_at REAL NOT NULL
    );
    """

    def __init__(self, path: Path, clock=time.time) -> None:
        self._clock = clock
        super().__init__(path)

    def get(self, key: str) -> bytes | None:
        rows = self._execute("SELECT value, expires_at FROM cache WHERE key = ?", (key,))
        if not rows or rows[0][1] <= self._clock():
            return None
        return bytes(rows[0][0])

    def put(self, key: str, value: bytes, ttl_seconds: int) -> None:
        now = self._clock()
        self._execute(
            "INSERT OR REPLACE INTO cache (key, value, expires_at) VALUES (?, ?, ?)",
            (key, value, now + ttl_seconds),
        )
        # Sweep now and then, as DynamoDB's TTL does, so the file does not grow without end.
        if hash(key) % 64 == 0:
            self._execute("DELETE FROM cache WHERE expires_at <= ?", (now,))


_RECORD_COLUMNS = (
    "customer_id, date, object_key, raw_key, raw_bytes, parquet_bytes, rows, uploaded_at,"
    " content_hash, held"
)
_LIVE = "(expires_at = 0 OR expires_at > ?)"


class SqliteMetadataIndex(_Sqlite):
    schema = """
    CREATE TABLE IF NOT EXISTS uploads (
        customer_id TEXT NOT NULL, date TEXT NOT NULL, object_key TEXT NOT NULL,
        raw_key TEXT NOT NULL, raw_bytes INTEGER NOT NULL, parquet_bytes INTEGER NOT NULL,
        rows INTEGER NOT NULL, uploaded_at REAL NOT NULL, content_hash TEXT NOT NULL,
        held TEXT NOT NULL DEFAULT '', expires_at REAL NOT NULL DEFAULT 0,
        PRIMARY KEY (customer_id, date)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS uploads_by_time ON uploads (uploaded_at);
    """

    def __init__(
        self, path: Path, *, retention_days: int = 0, clock: Callable[[], float] = time.time
    ) -> None:
        self.retention_days = retention_days
        self._clock = clock
        super().__init__(path)
        # A database from before these columns: add them (SQLite adds columns in place).
        columns = {row[1] for row in self._execute("PRAGMA table_info(uploads)")}
        if "held" not in columns:
            self._execute("ALTER TABLE uploads ADD COLUMN held TEXT NOT NULL DEFAULT ''")
        if "expires_at" not in columns:
            self._execute("ALTER TABLE uploads ADD COLUMN expires_at REAL NOT NULL DEFAULT 0")
        self._execute(
            "CREATE INDEX IF NOT EXISTS uploads_by_expiry ON uploads (expires_at)"
            " WHERE expires_at > 0"
        )

    def _values(self, record: UploadRecord) -> tuple:
        expires = layout.index_expires_at(record.date, record.uploaded_at, self.retention_days)
        return (*astuple(record), expires)

    def put(self, record: UploadRecord) -> None:
        self._execute(
            f"INSERT OR REPLACE INTO uploads ({_RECORD_COLUMNS}, expires_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            self._values(record),
        )

    def get(self, customer_id: str, date: str) -> UploadRecord | None:
        rows = self._execute(
            f"SELECT {_RECORD_COLUMNS} FROM uploads WHERE customer_id = ? AND date = ? AND {_LIVE}",
            (customer_id, date, self._clock()),
        )
        return UploadRecord(*rows[0]) if rows else None

    def customer_days(self, customer_id: str, start: str, end: str) -> list[UploadRecord]:
        rows = self._execute(
            f"SELECT {_RECORD_COLUMNS} FROM uploads WHERE customer_id = ? AND date BETWEEN ? AND ?"
            f" AND {_LIVE} ORDER BY date",
            (customer_id, start, end, self._clock()),
        )
        return [UploadRecord(*row) for row in rows]

    def uploaded_since(self, since: float, limit: int = 10_000) -> list[UploadRecord]:
        rows = self._execute(
            f"SELECT {_RECORD_COLUMNS} FROM uploads WHERE uploaded_at > ? AND {_LIVE}"
            " ORDER BY uploaded_at LIMIT ?",
            (since, self._clock(), limit),
        )
        return [UploadRecord(*row) for row in rows]

    def put_if(self, record: UploadRecord, expected_hash: str | None) -> bool:
        values = self._values(record)  # in _RECORD_COLUMNS order, then expires_at
        now = self._clock()
        if expected_hash is None:
            # A record past its retention counts as absent: it is replaced.
            self._execute(
                f"INSERT INTO uploads ({_RECORD_COLUMNS}, expires_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT (customer_id, date) DO UPDATE SET object_key = excluded.object_key,"
                " raw_key = excluded.raw_key, raw_bytes = excluded.raw_bytes,"
                " parquet_bytes = excluded.parquet_bytes, rows = excluded.rows,"
                " uploaded_at = excluded.uploaded_at, content_hash = excluded.content_hash,"
                " held = excluded.held, expires_at = excluded.expires_at"
                " WHERE uploads.expires_at > 0 AND uploads.expires_at <= ?",
                (*values, now),
            )
        else:
            self._execute(
                "UPDATE uploads SET object_key = ?, raw_key = ?, raw_bytes = ?, parquet_bytes = ?,"
                " rows = ?, uploaded_at = ?, content_hash = ?, held = ?, expires_at = ?"
                f" WHERE customer_id = ? AND date = ? AND content_hash = ? AND {_LIVE}",
                (*values[2:], record.customer_id, record.date, expected_hash, now),
            )
        return self._execute("SELECT changes()")[0][0] == 1

    def prune_expired(self, now: float) -> int:
        self._execute("DELETE FROM uploads WHERE expires_at > 0 AND expires_at <= ?", (now,))
        return self._execute("SELECT changes()")[0][0]


class SqliteStateStore(_Sqlite):
    schema = """
    CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS counters (
        name TEXT NOT NULL, field TEXT NOT NULL, value INTEGER NOT NULL,
        PRIMARY KEY (name, field)
    ) WITHOUT ROWID;
    """

    def increment(self, name: str, amounts: dict[str, int]) -> None:
        self._write_many(
            (
                "INSERT INTO counters (name, field, value) VALUES (?, ?, ?)"
                " ON CONFLICT (name, field) DO UPDATE SET value = value + excluded.value",
                [(name, field, int(amount)) for field, amount in amounts.items()],
            )
        )

    def counters(self, names: list[str]) -> dict[str, dict[str, int]]:
        if not names:
            return {}
        marks = ",".join("?" * len(names))
        found: dict[str, dict[str, int]] = {}
        for name, field, value in self._execute(
            f"SELECT name, field, value FROM counters WHERE name IN ({marks})", names
        ):
            found.setdefault(name, {})[field] = value
        return found

    def get(self, name: str) -> str | None:
        rows = self._execute("SELECT value FROM state WHERE name = ?", (name,))
        return rows[0][0] if rows else None

    def put(self, name: str, value: str) -> None:
        self._execute("INSERT OR REPLACE INTO state (name, value) VALUES (?, ?)", (name, value))

    def get_many(self, names: list[str]) -> dict[str, str]:
        if not names:
            return {}
        marks = ",".join("?" * len(names))
        rows = self._execute(f"SELECT name, value FROM state WHERE name IN ({marks})", names)
        return dict(rows)


class SqliteRecordStore(_Sqlite):
    schema = """
    CREATE TABLE IF NOT EXISTS records (
        kind TEXT NOT NULL, key TEXT NOT NULL, doc TEXT NOT NULL, expires_at REAL,
        PRIMARY KEY (kind, key)
    ) WITHOUT ROWID;
    """
    _LIVE = "(expires_at IS NULL OR expires_at > ?)"

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        super().__init__(path)
        columns = [row[1] for row in self._execute("PRAGMA table_info(records)")]
        if "expires_at" not in columns:  # a database from before records could expire
            self._execute("ALTER TABLE records ADD COLUMN expires_at REAL")

    @staticmethod
    def _body(doc: dict) -> str:
        return json.dumps(doc, separators=(",", ":"))

    def put(self, kind: str, key: str, doc: dict, *, expires_at: float | None = None) -> None:
        self._execute(
            "INSERT OR REPLACE INTO records (kind, key, doc, expires_at) VALUES (?, ?, ?, ?)",
            (kind, key, self._body(doc), expires_at),
        )
        # Sweep now and then, as DynamoDB's TTL does, so expired records do not pile up.
        if expires_at is not None and hash(key) % 64 == 0:
            self._execute("DELETE FROM records WHERE expires_at <= ?", (self._clock(),))

    def put_new(self, kind: str, key: str, doc: dict) -> bool:
        # An expired record not yet swept counts as absent: it is overwritten.
        self._execute(
            "INSERT INTO records (kind, key, doc) VALUES (?, ?, ?)"
            " ON CONFLICT (kind, key) DO UPDATE SET doc = excluded.doc, expires_at = NULL"
            " WHERE records.expires_at <= ?",
            (kind, key, self._body(doc), self._clock()),
        )
        return self._execute("SELECT changes()")[0][0] == 1

    def replace(self, kind: str, key: str, doc: dict, *, expires_at: float | None = None) -> bool:
        self._execute(
            "UPDATE records SET doc = ?, expires_at = ?"
            f" WHERE kind = ? AND key = ? AND {self._LIVE}",
            (self._body(doc), expires_at, kind, key, self._clock()),
        )
        return self._execute("SELECT changes()")[0][0] == 1

    def get(self, kind: str, key: str) -> dict | None:
        rows = self._execute(
            f"SELECT doc FROM records WHERE kind = ? AND key = ? AND {self._LIVE}",
            (kind, key, self._clock()),
        )
        return json.loads(rows[0][0]) if rows else None

    def delete(self, kind: str, key: str) -> None:
        self._execute("DELETE FROM records WHERE kind = ? AND key = ?", (kind, key))

    def scan(
        self, kind: str, *, prefix: str = "", limit: int = 1000, newest_first: bool = False
    ) -> list[tuple[str, dict]]:
        order = "DESC" if newest_first else "ASC"
        rows = self._execute(
            f"SELECT key, doc FROM records WHERE kind = ? AND key >= ? AND key < ?"
            f" AND {self._LIVE} ORDER BY key {order} LIMIT ?",
            (kind, prefix, prefix + "\U0010ffff", self._clock(), limit),
        )
        return [(key, json.loads(doc)) for key, doc in rows]


class SqliteUploadQueue(_Sqlite):
    """The embedded upload queue: a SQLite table that several processes drain at once.

    Each key is one message: sending a key already waiting is a no-op, and sending one that
    is in flight bumps its generation, so the worker's delete puts it back instead of
    dropping a re-upload that arrived while the old bytes were being processed.
    """

    schema = """
    CREATE TABLE IF NOT EXISTS upload_queue (
        key TEXT PRIMARY KEY, generation INTEGER NOT NULL DEFAULT 0,
        visible_at REAL NOT NULL, receipt TEXT, attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS upload_queue_visible ON upload_queue (visible_at);
    CREATE TABLE IF NOT EXISTS upload_dead_letters (
        key TEXT PRIMARY KEY, reason TEXT NOT NULL, attempts INTEGER NOT NULL, dead_at REAL NOT NULL
    ) WITHOUT ROWID;
    """

    def __init__(
        self, path: Path, *, max_attempts: int = 5, retry_seconds: float = 30.0, clock=time.time
    ) -> None:
        self.max_attempts = max_attempts
        self.retry_seconds = retry_seconds
        self._clock = clock
        super().__init__(path)

    def send(self, keys: list[str]) -> None:
        if not keys:
            return
        self._write_many(
            (
                "INSERT INTO upload_queue (key, visible_at) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET generation = generation + 1",
                [(key, self._clock()) for key in dict.fromkeys(keys)],
            )
        )

    def receive(
        self, max_messages: int = 10, visibility_seconds: float = 300.0
    ) -> list[QueueMessage]:
        now = self._clock()
        receipt = uuid.uuid4().hex
        # One statement claims the rows, so two processes never receive the same delivery.
        rows = self._execute(
            "UPDATE upload_queue SET visible_at = ?, receipt = ?, attempts = attempts + 1"
            " WHERE key IN (SELECT key FROM upload_queue WHERE visible_at <= ?"
            " ORDER BY visible_at LIMIT ?) RETURNING key, generation, attempts",
            (now + visibility_seconds, receipt, now, max_messages),
        )
        return [
            QueueMessage(id=key, receipt=f"{receipt}:{generation}", keys=(key,), attempts=attempts)
            for key, generation, attempts in sorted(rows)
        ]

    def delete(self, messages: list[QueueMessage]) -> None:
        if not messages:
            return
        deliveries = [(m.id, *m.receipt.rsplit(":", 1)) for m in messages]
        self._write_many(
            (
                "DELETE FROM upload_queue WHERE key = ? AND receipt = ? AND generation = ?",
                [(key, receipt, int(generation)) for key, receipt, generation in deliveries],
            ),
            # Sent again while in flight: deliver the newer bytes too.
            (
                "UPDATE upload_queue SET visible_at = ?, attempts = 0"
                " WHERE key = ? AND receipt = ?",
                [(self._clock(), key, receipt) for key, receipt, _ in deliveries],
            ),
        )

    def release(self, message: QueueMessage, reason: str) -> None:
        receipt = message.receipt.rsplit(":", 1)[0]
        if message.attempts >= self.max_attempts:
            self._write_many(
                (
                    "INSERT OR REPLACE INTO upload_dead_letters (key, reason, attempts, dead_at)"
                    " VALUES (?, ?, ?, ?)",
                    [(message.id, reason, message.attempts, self._clock())],
                ),
                ("DELETE FROM upload_queue WHERE key = ? AND receipt = ?", [(message.id, receipt)]),
            )
            return
        self._execute(
            "UPDATE upload_queue SET visible_at = ?, last_error = ? WHERE key = ? AND receipt = ?",
            (self._clock() + self.retry_seconds, reason, message.id, receipt),
        )

    def depth(self) -> int:
        return self._execute("SELECT count(*) FROM upload_queue")[0][0]

    def dead_letters(self, limit: int = 100) -> list[tuple[str, str]]:
        rows = self._execute(
            "SELECT key, reason FROM upload_dead_letters ORDER BY dead_at DESC LIMIT ?", (limit,)
        )
        return [(key, reason) for key, reason in rows]
