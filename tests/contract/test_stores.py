"""One contract for every storage backend: the local folder + SQLite and S3 + DynamoDB + SQS.

The ``stores`` fixture is parametrized over the backends; ``lake``, ``cache``, ``index``,
``state``, ``records`` and ``queue`` come from it. The cache gets a clock the test moves, so
expiry is tested on the read path itself (DynamoDB's sweeper never sees the moved clock).

The queue runs on real time on both backends (SQS has no clock to move): visibility tests use
a visibility of a second or two and poll for the outcome with a deadline. On AWS it is an SQS
queue on moto's server with a dead-letter queue and a redrive policy, as the stack makes it.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa
import pytest

from data_access.stores import (
    CacheTable,
    Lake,
    MetadataIndex,
    ObjectMissing,
    QueueMessage,
    RecordStore,
    StateStore,
    UploadQueue,
    UploadRecord,
)

DAY = 86_400.0
INDEX_RETENTION_DAYS = 14
# Deliveries before a message is dead-lettered: SqliteUploadQueue's max_attempts, the SQS
# queue's maxReceiveCount.
QUEUE_MAX_ATTEMPTS = 3
QUEUE_DEADLINE_SECONDS = 20.0


class ManualClock:
    """Epoch seconds that move only when told to."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class BackendStores:
    lake: Lake
    cache: CacheTable
    index: MetadataIndex
    state: StateStore
    records: RecordStore
    queue: UploadQueue
    clock: ManualClock


def _local_stores(tmp_path: Path, clock: ManualClock) -> BackendStores:
    from data_access.local import (
        LocalLake,
        SqliteCacheTable,
        SqliteMetadataIndex,
        SqliteRecordStore,
        SqliteStateStore,
        SqliteUploadQueue,
    )

    db = tmp_path / "state.sqlite"
    return BackendStores(
        lake=LocalLake(tmp_path / "lake"),
        cache=SqliteCacheTable(db, clock=clock),
        index=SqliteMetadataIndex(db, retention_days=INDEX_RETENTION_DAYS, clock=clock),
        state=SqliteStateStore(db),
        records=SqliteRecordStore(db, clock=clock),
        # No retry delay: a released message is due again at once.
        queue=SqliteUploadQueue(db, max_attempts=QUEUE_MAX_ATTEMPTS, retry_seconds=0),
        clock=clock,
    )


def _aws_stores(request: pytest.FixtureRequest, clock: ManualClock) -> BackendStores:
    from data_access.aws import (
        DynamoCacheTable,
        DynamoMetadataIndex,
        DynamoRecordStore,
        SqsUploadQueue,
    )
    from tests.plugins.servers import create_upload_queues, delete_upload_queues

    stores = request.getfixturevalue("aws_stores")
    sqs = request.getfixturevalue("moto_server").client("sqs", timeout=5.0)
    queues = create_upload_queues(
        sqs, f"mc-contract-{uuid.uuid4().hex[:10]}", max_receive_count=QUEUE_MAX_ATTEMPTS
    )
    request.addfinalizer(lambda: delete_upload_queues(sqs, queues))
    return BackendStores(
        lake=stores.lake,
        cache=DynamoCacheTable(stores.cache.client, stores.cache.table_name, clock=clock),
        index=DynamoMetadataIndex(
            stores.index.client,
            stores.index.table_name,
            retention_days=INDEX_RETENTION_DAYS,
            clock=clock,
        ),
        state=stores.state,
        records=DynamoRecordStore(stores.records.client, stores.records.table_name, clock=clock),
        queue=SqsUploadQueue(
            sqs,
            queues.url,
            queues.dlq_url,
            stores.records,
            QUEUE_MAX_ATTEMPTS,
            bucket="mc-contract",
            retry_seconds=0,
        ),
        clock=clock,
    )


@pytest.fixture(params=["local", pytest.param("aws", marks=pytest.mark.aws)])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> BackendStores:
    clock = ManualClock(time.time())
    if request.param == "local":
        return _local_stores(tmp_path, clock)
    return _aws_stores(request, clock)


@pytest.fixture
def lake(stores: BackendStores) -> Lake:
    return stores.lake


@pytest.fixture
def cache(stores: BackendStores) -> CacheTable:
    return stores.cache


@pytest.fixture
def index(stores: BackendStores) -> MetadataIndex:
    return stores.index


@pytest.fixture
def state(stores: BackendStores) -> StateStore:
    return stores.state


@pytest.fixture
def records(stores: BackendStores) -> RecordStore:
    return stores.records


@pytest.fixture
def queue(stores: BackendStores) -> UploadQueue:
    return stores.queue


def _record(customer: str, date: str, uploaded_at: float, rows: int = 24) -> UploadRecord:
    return UploadRecord(
        customer_id=customer,
        date=date,
        object_key=f"processed/screen_time/{customer}/{date}/aggregated.parquet",
        raw_key=f"raw/screen_time/{customer}/{date}.json",
        raw_bytes=50_000 + rows,
        parquet_bytes=2_000 + rows,
        rows=rows,
        uploaded_at=uploaded_at,
        content_hash=f"{customer}-{date}-{uploaded_at}".encode().hex()[:64],
    )


def _raw_key(customer: str, date: str = "2024-05-01") -> str:
    return f"raw/screen_time/{customer}/{date}.json"


def _poll(
    receive: Callable[[], list[QueueMessage]], wanted: int = 1, what: str = "messages"
) -> list[QueueMessage]:
    """Receive until ``wanted`` messages came, or fail at the deadline."""
    found: list[QueueMessage] = []
    deadline = time.monotonic() + QUEUE_DEADLINE_SECONDS
    while len(found) < wanted:
        assert time.monotonic() < deadline, f"{what}: {len(found)} of {wanted} arrived in time"
        found.extend(receive())
    return found


def _usage_table(customer: str, minutes: list[int]) -> pa.Table:
    return pa.table(
        {
            "customer_id": [customer] * len(minutes),
            "app": [f"app-{n}" for n in range(len(minutes))],
            "minutes": pa.array(minutes, pa.int32()),
        }
    )


class StoreContract:
    """What every backend promises; collected by pytest for each ``stores`` parameter."""

    __test__ = True  # collected although the name does not start with "Test"

    def test_implements_the_protocols(self, stores: BackendStores) -> None:
        assert isinstance(stores.lake, Lake)
        assert isinstance(stores.cache, CacheTable)
        assert isinstance(stores.index, MetadataIndex)
        assert isinstance(stores.state, StateStore)
        assert isinstance(stores.records, RecordStore)
        assert isinstance(stores.queue, UploadQueue)

    # ------------------------------------------------------------------ lake

    def test_bytes_roundtrip(self, lake: Lake) -> None:
        payload = bytes(range(256)) * 40
        lake.write_bytes("raw/screen_time/c1/2024-05-01.json", payload)
        assert lake.read_bytes("raw/screen_time/c1/2024-05-01.json") == payload
        assert lake.exists("raw/screen_time/c1/2024-05-01.json")
        assert not lake.exists("raw/screen_time/c1/2024-05-02.json")

    def test_overwrite_is_atomic_for_readers(self, lake: Lake) -> None:
        key = "rollups/screen_time/date=2024-05-01/customers.parquet"
        old, new = b"a" * 300_000, b"b" * 120_000
        lake.write_bytes(key, old)
        seen: set[bytes] = set()
        done = threading.Event()

        def read_while_writing() -> None:
            while not done.is_set():
                seen.add(lake.read_bytes(key))

        reader = threading.Thread(target=read_while_writing)
        reader.start()
        try:
            for round_number in range(12):
                lake.write_bytes(key, new if round_number % 2 == 0 else old)
        finally:
            done.set()
            reader.join(timeout=30)
        assert seen <= {old, new}
        assert lake.read_bytes(key) == old  # the last round wrote the old payload back

    def test_missing_key_raises_object_missing(self, lake: Lake) -> None:
        with pytest.raises(ObjectMissing):
            lake.read_bytes("processed/screen_time/nobody/2024-01-01/aggregated.parquet")
        with pytest.raises(KeyError):  # ObjectMissing is a KeyError for callers that want one
            lake.read_bytes("nothing/here")

    def test_list_by_prefix_is_recursive_sorted_and_sized(self, lake: Lake) -> None:
        written = {
            "p/b/2.bin": b"22",
            "p/a/deep/3.bin": b"333",
            "p/a/1.bin": b"1",
            "p/ab.bin": b"4444",
            "q/5.bin": b"55555",
        }
        for key, data in written.items():
            lake.write_bytes(key, data)
        listed = list(lake.list("p/a"))
        expected = sorted(key for key in written if key.startswith("p/a"))
        assert [info.key for info in listed] == expected
        assert {info.key: info.size for info in listed} == {k: len(written[k]) for k in expected}
        assert all(info.modified > 0 for info in listed)
        assert [info.key for info in lake.list("p/")] == sorted(
            key for key in written if key.startswith("p/")
        )
        assert list(lake.list("absent/")) == []

    def test_delete(self, lake: Lake) -> None:
        lake.write_bytes("quarantine/screen_time/c1/bad.json", b"{")
        lake.write_bytes("quarantine/screen_time/c1/kept.json", b"{}")
        lake.delete("quarantine/screen_time/c1/bad.json")
        assert not lake.exists("quarantine/screen_time/c1/bad.json")
        with pytest.raises(ObjectMissing):
            lake.read_bytes("quarantine/screen_time/c1/bad.json")
        assert [info.key for info in lake.list("quarantine/")] == [
            "quarantine/screen_time/c1/kept.json"
        ]
        lake.delete("quarantine/screen_time/c1/never-written.json")  # no error

    def test_table_roundtrip(self, lake: Lake) -> None:
        tables = {
            f"processed/screen_time/c{n}/2024-05-01/aggregated.parquet": _usage_table(
                f"c{n}", [n * 10 + i for i in range(n + 1)]
            )
            for n in range(1, 4)
        }
        for key, table in tables.items():
            size = lake.write_table(key, table, compression="gzip", compression_level=9)
            assert size == len(lake.read_bytes(key))
        keys = list(tables)
        missing = "processed/screen_time/c9/2024-05-01/aggregated.parquet"
        read = lake.read_table([keys[1], missing, keys[0], keys[2]])
        expected = pa.concat_tables([tables[keys[1]], tables[keys[0]], tables[keys[2]]])
        assert read.num_rows == expected.num_rows
        assert read.column("minutes").to_pylist() == expected.column("minutes").to_pylist()
        assert read.column("customer_id").to_pylist() == expected.column("customer_id").to_pylist()

        subset = lake.read_table(keys, columns=["app", "minutes"])
        assert subset.column_names == ["app", "minutes"]
        assert subset.num_rows == sum(table.num_rows for table in tables.values())

        assert lake.read_table([missing]).num_rows == 0
        assert lake.read_table([]).num_rows == 0

        one_by_one = lake.read_tables([keys[2], missing, keys[0]], columns=["minutes"])
        assert one_by_one[1] is None
        assert [t.column("minutes").to_pylist() for t in (one_by_one[0], one_by_one[2])] == [
            tables[keys[2]].column("minutes").to_pylist(),
            tables[keys[0]].column("minutes").to_pylist(),
        ]
        assert lake.read_tables([]) == []

    def test_read_where_finds_rows_by_value_through_row_group_statistics(self, lake: Lake) -> None:
        customers = [f"c{n:05d}" for n in range(3000)]
        table = pa.table(
            {
                "customer_id": [c for c in customers for _ in range(3)],
                "minutes": list(range(9000)),
            }
        )
        key = "processed/screen_time/date=2024-05-01/bucket=00/part-test.parquet"
        # Several row groups, and a footer beyond the first range an S3 read fetches.
        lake.write_table(key, table, row_group_size=600, compression="zstd")
        found = lake.read_where(key, "customer_id", ["c00007", "c02999", "c99999"])
        assert found is not None
        assert found.column("customer_id").to_pylist() == ["c00007"] * 3 + ["c02999"] * 3
        assert found.column("minutes").to_pylist() == [21, 22, 23, 8997, 8998, 8999]
        only = lake.read_where(key, "customer_id", ["c01500"], columns=["minutes"])
        assert only is not None and only.column_names == ["minutes"]
        assert only.column("minutes").to_pylist() == [4500, 4501, 4502]
        # A column added to the layout after the file was written is left out, not an error.
        newer = lake.read_where(key, "customer_id", ["c01500"], columns=["minutes", "added"])
        assert newer is not None and newer.column_names == ["minutes"]
        assert lake.read_where("processed/screen_time/none.parquet", "customer_id", ["c1"]) is None

    # ------------------------------------------------------------------ cache

    def test_cache_roundtrip_and_miss(self, cache: CacheTable) -> None:
        value = bytes(range(256)) * 100
        cache.put("screen_time:c1:2024-05-01:v7", value, ttl_seconds=3600)
        assert cache.get("screen_time:c1:2024-05-01:v7") == value
        assert cache.get("screen_time:c1:2024-05-01:v8") is None

    def test_cache_large_compressible_value(self, cache: CacheTable) -> None:
        value = b'{"app": "video", "minutes": 12},' * 40_000  # ~1.3 MB of repetitive JSON
        cache.put("fleet:apps", value, ttl_seconds=60)
        assert cache.get("fleet:apps") == value

    def test_cache_expired_entry_is_a_miss(self, stores: BackendStores) -> None:
        stores.cache.put("kpi:revenue", b"42", ttl_seconds=60)
        stores.clock.advance(30)
        assert stores.cache.get("kpi:revenue") == b"42"
        stores.clock.advance(31)
        assert stores.cache.get("kpi:revenue") is None
        stores.cache.put("kpi:revenue", b"43", ttl_seconds=60)
        assert stores.cache.get("kpi:revenue") == b"43"

    def test_cache_overwrite(self, cache: CacheTable) -> None:
        cache.put("health:summary", b"first", ttl_seconds=60)
        cache.put("health:summary", b"second", ttl_seconds=60)
        assert cache.get("health:summary") == b"second"

    # ------------------------------------------------------------------ metadata index

    def test_index_put_get_and_overwrite(self, index: MetadataIndex) -> None:
        now = time.time()
        record = _record("c1", "2024-05-01", now)
        index.put(record)
        assert index.get("c1", "2024-05-01") == record
        assert index.get("c1", "2024-05-02") is None
        assert index.get("c2", "2024-05-01") is None
        reprocessed = replace(record, rows=30, uploaded_at=now + 5.25)
        index.put(reprocessed)
        assert index.get("c1", "2024-05-01") == reprocessed

    def test_index_customer_days_range(self, index: MetadataIndex) -> None:
        now = time.time()
        days = ["2024-04-30", "2024-05-03", "2024-05-01", "2024-05-05", "2024-05-02"]
        for offset, date in enumerate(days):
            index.put(_record("c1", date, now - offset))
        index.put(_record("c2", "2024-05-02", now))
        found = index.customer_days("c1", "2024-05-01", "2024-05-03")
        assert [r.date for r in found] == ["2024-05-01", "2024-05-02", "2024-05-03"]
        assert {r.customer_id for r in found} == {"c1"}
        assert index.customer_days("c1", "2024-06-01", "2024-06-30") == []
        assert index.customer_days("nobody", "2024-01-01", "2024-12-31") == []

    def test_index_uploaded_since_oldest_first(self, index: MetadataIndex) -> None:
        now = time.time()
        # Recent dates: records within the index's retention (the retention test is apart).
        d1 = (dt.date.today() - dt.timedelta(days=1)).isoformat()
        d2 = dt.date.today().isoformat()
        # Spread over several days, so a backend that buckets by day must cross buckets.
        uploads = {
            ("c1", d1): now - 3 * DAY,
            ("c2", d1): now - 2 * DAY + 0.5,
            ("c3", d2): now - DAY,
            ("c1", d2): now - 60,
            ("c2", d2): now - 0.25,
        }
        for (customer, date), uploaded_at in uploads.items():
            index.put(_record(customer, date, uploaded_at))
        ordered = sorted(uploads.items(), key=lambda item: item[1])

        since = now - 2 * DAY
        found = index.uploaded_since(since)
        expected = [key for key, at in ordered if at > since]
        assert [(r.customer_id, r.date) for r in found] == expected
        assert [r.uploaded_at for r in found] == sorted(r.uploaded_at for r in found)

        # The bound is exclusive.
        exact = uploads[("c3", d2)]
        assert ("c3", d2) not in [(r.customer_id, r.date) for r in index.uploaded_since(exact)]

        assert [(r.customer_id, r.date) for r in index.uploaded_since(since, limit=2)] == expected[
            :2
        ]
        everything = index.uploaded_since(0.0)
        assert [(r.customer_id, r.date) for r in everything] == [key for key, _ in ordered]
        assert index.uploaded_since(now + DAY) == []

    def test_index_put_if_writes_only_over_the_expected_hash(self, index: MetadataIndex) -> None:
        now = time.time()
        first = _record("c1", "2024-05-01", now)
        assert index.put_if(first, None) is True
        assert index.get("c1", "2024-05-01") == first
        # A duplicate delivery of the first version: a record exists, so nothing is written.
        # The replacing record notes what it replaced; the list round-trips on every backend.
        held = f"{first.content_hash}@{now!r}"
        corrected = replace(
            first, rows=30, uploaded_at=now + 1.25, content_hash="b" * 64, held=held
        )
        assert index.put_if(corrected, None) is False
        assert index.put_if(corrected, "not-the-stored-hash") is False
        assert index.get("c1", "2024-05-01") == first
        # The writer that read the first version replaces it.
        assert index.put_if(corrected, first.content_hash) is True
        assert index.get("c1", "2024-05-01") == corrected
        assert [r.held for r in index.uploaded_since(now)] == [held]
        # A writer that read the first version too, and comes second, loses.
        assert index.put_if(replace(first, rows=99), first.content_hash) is False
        assert index.get("c1", "2024-05-01") == corrected
        # Replacing what is not there writes nothing.
        assert index.put_if(_record("c2", "2024-05-01", now), first.content_hash) is False
        assert index.get("c2", "2024-05-01") is None

    def test_index_records_past_their_retention_read_as_absent(self, stores: BackendStores) -> None:
        index, clock = stores.index, stores.clock
        written = clock.now
        old = _record("c-old", "2024-05-01", written)  # a date long past the retention
        recent = _record("c-new", dt.date.today().isoformat(), written)
        assert index.put_if(old, None) and index.put_if(recent, None)
        assert index.get("c-old", "2024-05-01") == old
        # Kept two days after it was written, however old its date: then it is gone.
        clock.advance(2 * DAY + 1)
        assert index.get("c-old", "2024-05-01") is None
        assert index.customer_days("c-old", "2024-01-01", "2024-12-31") == []
        assert [r.customer_id for r in index.uploaded_since(written - 1)] == ["c-new"]
        # Absent means absent: a new version is written as a first one, and a writer that
        # expects the expired version loses.
        assert index.put_if(replace(old, rows=1), old.content_hash) is False
        newer = replace(old, uploaded_at=clock.now, content_hash="c" * 64)
        assert index.put_if(newer, None) is True
        assert index.get("c-old", "2024-05-01") == newer
        # Pruning deletes what is past its retention (on DynamoDB the table's TTL does).
        clock.advance(2 * DAY + 1)
        assert index.prune_expired(clock.now) in (0, 1)
        assert index.get("c-old", "2024-05-01") is None
        assert index.get("c-new", recent.date) == recent

    def test_index_put_if_racing_writers_one_wins(self, index: MetadataIndex) -> None:
        now = time.time()
        contenders = [
            replace(_record("c1", "2024-05-01", now + n), content_hash=f"{n}" * 64)
            for n in range(4)
        ]
        start = threading.Barrier(len(contenders))
        won: dict[str, bool] = {}

        def write(record: UploadRecord) -> None:
            start.wait(timeout=30)
            won[record.content_hash] = index.put_if(record, None)

        threads = [threading.Thread(target=write, args=(record,)) for record in contenders]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        winners = [content_hash for content_hash, ok in won.items() if ok]
        assert len(won) == len(contenders) and len(winners) == 1, won
        stored = index.get("c1", "2024-05-01")
        assert stored is not None and stored.content_hash == winners[0]

    # ------------------------------------------------------------------ state

    def test_state_get_put(self, state: StateStore) -> None:
        assert state.get("version:customer:c1") is None
        state.put("version:customer:c1", "1714521600.5")
        assert state.get("version:customer:c1") == "1714521600.5"
        state.put("version:customer:c1", "1714521700.0")
        assert state.get("version:customer:c1") == "1714521700.0"

    def test_state_get_many(self, state: StateStore) -> None:
        values = {f"watermark:{n}": str(n * 1.5) for n in range(130)}  # more than one batch
        for name, value in values.items():
            state.put(name, value)
        asked = [*values, "watermark:missing", "watermark:3"]
        assert state.get_many(asked) == values
        assert state.get_many(["watermark:missing"]) == {}
        assert state.get_many([]) == {}

    def test_state_increment_adds_up_counters(self, state: StateStore) -> None:
        state.increment("counters:2024-05-01T10", {"processed": 1, "raw_bytes": 40_000})
        state.increment(
            "counters:2024-05-01T10", {"processed": 2, "raw_bytes": 1_000, "quarantined": 1}
        )
        state.increment("counters:2024-05-01T11", {"processed": 5})
        assert state.counters(["counters:2024-05-01T10", "counters:absent"]) == {
            "counters:2024-05-01T10": {"processed": 3, "raw_bytes": 41_000, "quarantined": 1}
        }
        assert state.counters(["counters:2024-05-01T11", "counters:2024-05-01T10"]) == {
            "counters:2024-05-01T10": {"processed": 3, "raw_bytes": 41_000, "quarantined": 1},
            "counters:2024-05-01T11": {"processed": 5},
        }
        assert state.counters(["counters:absent"]) == {}
        assert state.counters([]) == {}

    def test_state_counters_and_values_do_not_mix(self, state: StateStore) -> None:
        state.put("version:rollup:screen_time", "1714521600.5")
        state.increment("counters:2024-05-01T10", {"processed": 1})
        assert state.counters(["version:rollup:screen_time"]) == {}
        assert state.get("counters:2024-05-01T10") is None
        assert state.get_many(["counters:2024-05-01T10", "version:rollup:screen_time"]) == {
            "version:rollup:screen_time": "1714521600.5"
        }

    def test_state_counters_of_many_names(self, state: StateStore) -> None:
        names = [f"counters:2024-05-{day:02d}T{hour:02d}" for day in (1, 2) for hour in range(24)]
        names += [f"counters:2024-05-03T{hour:02d}" for hour in range(24)]
        names += [f"counters:extra:{n}" for n in range(40)]  # 112 names: more than one batch
        for n, name in enumerate(names):
            state.increment(name, {"processed": n + 1})
        found = state.counters([*names, "counters:absent"])
        assert found == {name: {"processed": n + 1} for n, name in enumerate(names)}

    def test_state_concurrent_increments_all_count(self, state: StateStore) -> None:
        threads_count, rounds = 4, 15
        start = threading.Barrier(threads_count)
        errors: list[BaseException] = []

        def add() -> None:
            try:
                start.wait(timeout=30)
                for _ in range(rounds):
                    state.increment("counters:race", {"processed": 1, "raw_bytes": 10})
            except BaseException as exc:  # surfaced in the main thread below
                errors.append(exc)

        threads = [threading.Thread(target=add) for _ in range(threads_count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
        total = threads_count * rounds
        assert state.counters(["counters:race"]) == {
            "counters:race": {"processed": total, "raw_bytes": 10 * total}
        }

    # ------------------------------------------------------------------ records

    def test_records_put_get_delete(self, records: RecordStore) -> None:
        doc = {"name": "ops", "roles": ["viewer"], "nested": {"n": 1.5, "ok": True}}
        assert records.get("apikey", "k1") is None
        records.put("apikey", "k1", doc)
        assert records.get("apikey", "k1") == doc
        assert records.get("alert", "k1") is None  # kinds are separate
        records.put("apikey", "k1", {**doc, "roles": []})
        assert records.get("apikey", "k1") == {**doc, "roles": []}
        records.delete("apikey", "k1")
        assert records.get("apikey", "k1") is None
        records.delete("apikey", "k1")  # no error

    def test_records_put_new_writes_once(self, records: RecordStore) -> None:
        assert records.put_new("delivery", "d1", {"attempt": 1}) is True
        assert records.put_new("delivery", "d1", {"attempt": 2}) is False
        assert records.get("delivery", "d1") == {"attempt": 1}
        assert records.put_new("audit", "d1", {"attempt": 3}) is True

    def test_records_scan_prefix_order_and_limit(self, records: RecordStore) -> None:
        keys = [
            f"{ts:017.6f}-{n}" for n, ts in enumerate([1714521600.5, 1714521599.0, 1714521700.25])
        ]
        for key in keys:
            records.put("audit", key, {"key": key})
        records.put("audit", "other-1", {"key": "other-1"})
        records.put("alert", keys[0], {"key": "not audit"})
        by_time = sorted(keys)
        found = records.scan("audit", prefix="1714")
        assert [key for key, _ in found] == by_time
        assert [doc["key"] for _, doc in found] == by_time
        assert [key for key, _ in records.scan("audit", prefix="1714", newest_first=True)] == (
            by_time[::-1]
        )
        assert [key for key, _ in records.scan("audit", prefix="1714", limit=2)] == by_time[:2]
        assert [key for key, _ in records.scan("audit")] == sorted([*keys, "other-1"])
        assert records.scan("audit", prefix="zzz") == []
        assert records.scan("nothing") == []

    def test_records_expired_record_is_absent(self, stores: BackendStores) -> None:
        records, clock = stores.records, stores.clock
        records.put("session", "s1", {"n": 1}, expires_at=clock.now + 10)
        records.put("session", "s2", {"n": 2})
        clock.advance(9)
        assert records.get("session", "s1") == {"n": 1}
        assert [key for key, _ in records.scan("session")] == ["s1", "s2"]
        clock.advance(2)  # past the expiry; DynamoDB's TTL sweep has not run yet
        assert records.get("session", "s1") is None
        assert [key for key, _ in records.scan("session")] == ["s2"]
        assert records.get("session", "s2") == {"n": 2}
        # Absent means absent for a conditional write too.
        assert records.put_new("session", "s1", {"n": 3}) is True
        assert records.get("session", "s1") == {"n": 3}
        clock.advance(3600)
        assert records.get("session", "s1") == {"n": 3}  # put_new wrote no expiry

    def test_records_replace_writes_only_over_a_live_record(self, stores: BackendStores) -> None:
        records, clock = stores.records, stores.clock
        assert records.replace("session", "s1", {"n": 1}) is False
        assert records.get("session", "s1") is None  # nothing was created
        records.put("session", "s1", {"n": 1}, expires_at=clock.now + 10)
        assert records.replace("session", "s1", {"n": 2}, expires_at=clock.now + 20) is True
        clock.advance(15)  # past the first expiry, within the replaced one
        assert records.get("session", "s1") == {"n": 2}
        clock.advance(10)
        assert records.replace("session", "s1", {"n": 3}, expires_at=clock.now + 60) is False
        assert records.get("session", "s1") is None
        records.put("session", "s2", {"n": 1}, expires_at=clock.now + 60)
        records.delete("session", "s2")
        assert records.replace("session", "s2", {"n": 2}, expires_at=clock.now + 60) is False
        assert records.get("session", "s2") is None

    # ------------------------------------------------------------------ upload queue

    def test_queue_send_receive_delete(self, queue: UploadQueue) -> None:
        keys = [_raw_key("c1"), _raw_key("c2"), _raw_key("c3", "2024-05-02")]
        queue.send(keys)
        received = _poll(lambda: queue.receive(10, visibility_seconds=60), wanted=len(keys))
        assert sorted(key for message in received for key in message.keys) == sorted(keys)
        assert all(len(message.keys) == 1 for message in received)
        assert all(message.attempts == 1 and message.problem is None for message in received)
        assert len({message.id for message in received}) == len(keys)
        assert queue.depth() == len(keys)  # in flight still counts
        assert queue.receive(10, visibility_seconds=60) == []
        queue.delete(received)
        assert queue.depth() == 0
        assert queue.receive(10, visibility_seconds=60) == []
        assert queue.dead_letters() == []
        queue.send([])  # nothing to send is no error

    def test_queue_receive_honours_max_messages(self, queue: UploadQueue) -> None:
        keys = [_raw_key(f"c{n}") for n in range(13)]  # more than one SQS batch
        queue.send(keys)
        first = _poll(lambda: queue.receive(12, visibility_seconds=60), what="first receive")
        assert len(first) <= 12
        rest = _poll(
            lambda: queue.receive(12, visibility_seconds=60),
            wanted=len(keys) - len(first),
            what="the rest",
        )
        assert sorted(k for m in [*first, *rest] for k in m.keys) == sorted(keys)
        queue.delete([*first, *rest])
        assert queue.depth() == 0

    def test_queue_message_is_invisible_until_its_visibility_passes(
        self, queue: UploadQueue
    ) -> None:
        queue.send([_raw_key("c1")])
        [first] = _poll(lambda: queue.receive(10, visibility_seconds=2))
        received_at = time.monotonic()
        hidden = queue.receive(10, visibility_seconds=2)
        if time.monotonic() - received_at < 2:  # asked within the visibility, as intended
            assert hidden == []
        # Neither deleted nor released: a crashed worker. It comes back by itself.
        [again] = _poll(lambda: queue.receive(10, visibility_seconds=60), what="redelivery")
        assert time.monotonic() - received_at >= 1.0
        assert again.id == first.id
        assert again.keys == first.keys
        assert again.attempts == 2
        assert again.receipt != first.receipt
        queue.delete([again])
        assert queue.depth() == 0

    def test_queue_released_message_dead_letters_after_max_attempts(
        self, queue: UploadQueue
    ) -> None:
        queue.send([_raw_key("c1")])
        deliveries = []
        for attempt in range(1, QUEUE_MAX_ATTEMPTS + 1):
            [message] = _poll(lambda: queue.receive(10, visibility_seconds=60), what="delivery")
            assert message.attempts == attempt
            deliveries.append(message)
            queue.release(message, f"attempt {attempt}: StoreUnavailable: index down")
        assert len({message.id for message in deliveries}) == 1
        # The next receive finds it out of attempts (SQS moves it to the dead-letter queue).
        deadline = time.monotonic() + QUEUE_DEADLINE_SECONDS
        while not queue.dead_letters():
            assert time.monotonic() < deadline, "the message was not dead-lettered"
            assert queue.receive(10, visibility_seconds=60) == []
        reason = f"attempt {QUEUE_MAX_ATTEMPTS}: StoreUnavailable: index down"
        assert queue.dead_letters() == [(deliveries[0].id, reason)]
        assert queue.dead_letters() == [(deliveries[0].id, reason)]  # reading does not consume
        assert queue.dead_letters(limit=0) == []
        assert queue.depth() == 0
        assert queue.receive(10, visibility_seconds=60) == []

    def test_queue_released_message_comes_back(self, queue: UploadQueue) -> None:
        queue.send([_raw_key("c1")])
        [message] = _poll(lambda: queue.receive(10, visibility_seconds=60))
        queue.release(message, "ConnectionError: lake unreachable")
        [again] = _poll(lambda: queue.receive(10, visibility_seconds=60), what="redelivery")
        assert (again.id, again.keys, again.attempts) == (message.id, message.keys, 2)
        queue.delete([again])
        assert queue.depth() == 0
        assert queue.dead_letters() == []


# ---------------------------------------------------------------------- the embedded queue only


def test_local_queue_holds_one_message_per_waiting_key(tmp_path: Path) -> None:
    """SQS delivers each send (S3 may notify twice too); the embedded queue coalesces."""
    from data_access.local import SqliteUploadQueue

    queue = SqliteUploadQueue(tmp_path / "state.sqlite", retry_seconds=0)
    queue.send([_raw_key("c1")])
    queue.send([_raw_key("c1"), _raw_key("c1")])
    assert queue.depth() == 1
    [message] = queue.receive(10, visibility_seconds=60)
    assert message.keys == (_raw_key("c1"),)
    assert queue.receive(10, visibility_seconds=60) == []


def test_local_queue_keeps_a_key_sent_again_while_in_flight(tmp_path: Path) -> None:
    """A re-upload during processing must be processed too: the delete leaves it queued."""
    from data_access.local import SqliteUploadQueue

    queue = SqliteUploadQueue(tmp_path / "state.sqlite", retry_seconds=0)
    queue.send([_raw_key("c1")])
    [first] = queue.receive(10, visibility_seconds=60)
    queue.send([_raw_key("c1")])  # the device uploaded corrected bytes meanwhile
    queue.delete([first])
    assert queue.depth() == 1
    [second] = queue.receive(10, visibility_seconds=60)
    assert second.keys == first.keys and second.attempts == 1
    queue.delete([second])
    assert queue.depth() == 0
