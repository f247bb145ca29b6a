"""One contract for every storage backend: the local folder + SQLite and S3 + DynamoDB.

The ``stores`` fixture is parametrized over the backends; ``lake``, ``cache``, ``index``,
``state`` and ``records`` come from it. The cache gets a clock the test moves, so expiry is tested
on the read path itself (DynamoDB's sweeper never sees the moved clock).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa
import pytest

from data_access.stores import (
    CacheTable,
    Lake,
    MetadataIndex,
    ObjectMissing,
    RecordStore,
    StateStore,
    UploadRecord,
)

DAY = 86_400.0


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
    clock: ManualClock


def _local_stores(tmp_path: Path, clock: ManualClock) -> BackendStores:
    from data_access.local import (
        LocalLake,
        SqliteCacheTable,
        SqliteMetadataIndex,
        SqliteRecordStore,
        SqliteStateStore,
    )

    db = tmp_path / "state.sqlite"
    return BackendStores(
        lake=LocalLake(tmp_path / "lake"),
        cache=SqliteCacheTable(db, clock=clock),
        index=SqliteMetadataIndex(db),
        state=SqliteStateStore(db),
        records=SqliteRecordStore(db),
        clock=clock,
    )


def _aws_stores(request: pytest.FixtureRequest, clock: ManualClock) -> BackendStores:
    from data_access.aws import DynamoCacheTable

    stores = request.getfixturevalue("aws_stores")
    return BackendStores(
        lake=stores.lake,
        cache=DynamoCacheTable(stores.cache.client, stores.cache.table_name, clock=clock),
        index=stores.index,
        state=stores.state,
        records=stores.records,
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
        # Spread over several days, so a backend that buckets by day must cross buckets.
        uploads = {
            ("c1", "2024-05-01"): now - 3 * DAY,
            ("c2", "2024-05-01"): now - 2 * DAY + 0.5,
            ("c3", "2024-05-02"): now - DAY,
            ("c1", "2024-05-02"): now - 60,
            ("c2", "2024-05-02"): now - 0.25,
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
        exact = uploads[("c3", "2024-05-02")]
        assert ("c3", "2024-05-02") not in [
            (r.customer_id, r.date) for r in index.uploaded_since(exact)
        ]

        assert [(r.customer_id, r.date) for r in index.uploaded_since(since, limit=2)] == expected[
            :2
        ]
        everything = index.uploaded_since(0.0)
        assert [(r.customer_id, r.date) for r in everything] == [key for key, _ in ordered]
        assert index.uploaded_since(now + DAY) == []

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
