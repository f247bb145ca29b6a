"""The read-through tiers: memory -> cache table -> lake, and what happens when tiers fail."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import ClassVar

import pandas as pd
import pytest

from data_access.queries import Query
from data_access.service import DataService, NoData, VersionGone, decode, encode
from data_access.settings import DataSettings
from data_access.stores import Stores, StoreUnavailable


@dataclass(frozen=True)
class CountingQuery(Query):
    """Reads one small object from the lake and counts how often it was asked to."""

    kind: ClassVar[str] = "counting"
    name: str = "a"
    loads: ClassVar[list[str]] = []

    def versions(self) -> list[str]:
        return [f"version:test:{self.name}"]

    def load(self, stores: Stores) -> pd.DataFrame:
        CountingQuery.loads.append(self.name)
        value = int(stores.lake.read_bytes(f"test/{self.name}"))
        return pd.DataFrame({"value": [value]})


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class BrokenCache:
    def get(self, key: str) -> bytes | None:
        raise StoreUnavailable("cache down")

    def put(self, key: str, value: bytes, ttl_seconds: int) -> None:
        raise StoreUnavailable("cache down")


class BrokenLake:
    def __init__(self, lake) -> None:
        self._lake = lake

    def read_bytes(self, key: str) -> bytes:
        raise StoreUnavailable("lake down")


@pytest.fixture
def service(local_stores: Stores, local_settings: DataSettings):
    CountingQuery.loads.clear()
    local_stores.lake.write_bytes("test/a", b"41")
    clock = Clock()
    settings = local_settings.model_copy(update={"memo_seconds": 10, "version_memo_seconds": 0})
    return DataService(local_stores, settings, clock=clock), clock


def test_encode_roundtrip_keeps_types_and_time():
    frame = pd.DataFrame({"day": ["2026-11-01"], "seconds": [3600], "avg": [1.5]})
    decoded, as_of = decode(encode(frame, 123.5))
    pd.testing.assert_frame_equal(decoded, frame)
    assert as_of == 123.5


def test_first_read_comes_from_the_lake_then_memory(service):
    svc, _clock = service
    first = svc.fetch(CountingQuery())
    assert first.provenance.tier == "lake"
    assert first.data["value"].tolist() == [41]
    second = svc.fetch(CountingQuery())
    assert second.provenance.tier == "memory"
    assert CountingQuery.loads == ["a"]


def test_memo_expiry_falls_to_the_cache_table_not_the_lake(service):
    svc, clock = service
    svc.fetch(CountingQuery())
    clock.now += 11  # past the memo, inside the cache TTL
    again = svc.fetch(CountingQuery())
    assert again.provenance.tier == "cache"
    assert again.provenance.as_of == 1_000_000.0
    assert CountingQuery.loads == ["a"]


def test_expired_cache_entry_is_a_miss(local_stores, local_settings):
    from data_access.local import SqliteCacheTable

    clock = Clock()
    stores = replace(local_stores, cache=SqliteCacheTable(local_settings.state_db, clock=clock))
    stores.lake.write_bytes("test/a", b"1")
    settings = local_settings.model_copy(
        update={"memo_seconds": 1, "version_memo_seconds": 0, "cache_ttl_seconds": 60}
    )
    svc = DataService(stores, settings, clock=clock)
    CountingQuery.loads.clear()
    svc.fetch(CountingQuery())
    clock.now += 61
    assert svc.fetch(CountingQuery()).provenance.tier == "lake"
    assert CountingQuery.loads == ["a", "a"]


def test_new_version_is_visible_at_once(service):
    svc, _clock = service
    assert svc.fetch(CountingQuery()).data["value"].tolist() == [41]
    svc.stores.lake.write_bytes("test/a", b"42")
    svc.stores.state.put("version:test:a", "2")
    fresh = svc.fetch(CountingQuery())
    assert fresh.provenance.tier == "lake"
    assert fresh.provenance.version == "2"
    assert fresh.data["value"].tolist() == [42]


def test_cache_table_down_reads_the_lake_and_says_so(local_stores, local_settings):
    stores = replace(local_stores, cache=BrokenCache())
    stores.lake.write_bytes("test/a", b"7")
    svc = DataService(stores, local_settings.model_copy(update={"version_memo_seconds": 0}))
    result = svc.fetch(CountingQuery())
    assert result.provenance.tier == "lake"
    assert result.provenance.problem == "cache table unreachable"
    assert result.data["value"].tolist() == [7]
    # One error: after a failed read the service does not try to write the answer back.
    assert svc.counters.cache_errors == 1


def test_lake_down_serves_last_good_marked_stale(service):
    svc, _clock = service
    svc.fetch(CountingQuery())
    svc.stores = replace(svc.stores, lake=BrokenLake(svc.stores.lake))
    svc.stores.state.put("version:test:a", "changed")  # forces a miss on every tier
    stale = svc.fetch(CountingQuery())
    assert stale.provenance.tier == "stale"
    assert stale.provenance.problem == "lake unreachable"
    assert stale.data["value"].tolist() == [41]


def test_lake_down_without_earlier_data_raises_no_data(service):
    svc, _ = service
    svc.stores = replace(svc.stores, lake=BrokenLake(svc.stores.lake))
    with pytest.raises(NoData):
        svc.fetch(CountingQuery(name="never-read"))


def test_cache_key_depends_on_parameters_and_version():
    one = DataService.cache_key(CountingQuery(name="a"), "1")
    assert one == DataService.cache_key(CountingQuery(name="a"), "1")
    assert one != DataService.cache_key(CountingQuery(name="b"), "1")
    assert one != DataService.cache_key(CountingQuery(name="a"), "2")


def test_date_range_rejects_backwards_ranges():
    from data_access.queries import FleetDailyQuery

    with pytest.raises(ValueError):
        FleetDailyQuery(dt.date(2026, 11, 2), dt.date(2026, 11, 1))


class BrokenState:
    def get(self, name: str) -> str | None:
        raise StoreUnavailable("state down")

    def put(self, name: str, value: str) -> None:
        raise StoreUnavailable("state down")

    def get_many(self, names: list[str]) -> dict[str, str]:
        raise StoreUnavailable("state down")


def test_version_store_down_reads_the_lake_and_every_answer_says_degraded(
    local_stores, local_settings
):
    local_stores.lake.write_bytes("test/a", b"5")
    stores = replace(local_stores, state=BrokenState())
    svc = DataService(stores, local_settings.model_copy(update={"version_memo_seconds": 30}))
    first = svc.fetch(CountingQuery())
    assert first.data["value"].tolist() == [5]
    assert (first.provenance.tier, first.provenance.problem) == ("lake", "cache table unreachable")
    again = svc.fetch(CountingQuery())  # from memory, still marked
    assert (again.provenance.tier, again.provenance.problem) == (
        "memory",
        "cache table unreachable",
    )
    # Nothing was cached under the unknown version.
    assert local_stores.cache.get(DataService.cache_key(CountingQuery(), "unknown")) is None


# ---- answers pinned to the version a panel showed ---------------------------------------------


def test_a_pinned_read_answers_the_shown_version_after_the_data_moved(service):
    svc, clock = service
    shown = svc.fetch(CountingQuery())
    svc.stores.lake.write_bytes("test/a", b"42")
    svc.stores.state.put("version:test:a", "2")
    pinned = svc.fetch_at(CountingQuery(), shown.provenance.version)
    assert pinned.data["value"].tolist() == [41]  # from memory
    clock.now += 11  # past the memo: the cache table still holds that version
    assert svc.fetch_at(CountingQuery(), shown.provenance.version).data["value"].tolist() == [41]
    assert CountingQuery.loads == ["a"]
    assert svc.fetch(CountingQuery()).data["value"].tolist() == [42]


def test_a_pinned_version_no_longer_kept_and_no_longer_current_is_gone(
    local_stores, local_settings
):
    from data_access.local import SqliteCacheTable

    clock = Clock()
    stores = replace(local_stores, cache=SqliteCacheTable(local_settings.state_db, clock=clock))
    stores.lake.write_bytes("test/a", b"1")
    settings = local_settings.model_copy(
        update={"memo_seconds": 1, "version_memo_seconds": 0, "cache_ttl_seconds": 60}
    )
    svc = DataService(stores, settings, clock=clock)
    CountingQuery.loads.clear()
    shown = svc.fetch(CountingQuery()).provenance.version
    stores.lake.write_bytes("test/a", b"2")
    stores.state.put("version:test:a", "moved")
    clock.now += 61  # past the memo and the cache entry
    fresh = DataService(stores, settings, clock=clock)  # another worker: no last good answer
    with pytest.raises(VersionGone) as gone:
        fresh.fetch_at(CountingQuery(), shown)
    assert (gone.value.pinned, gone.value.current) == (shown, "moved")
    assert CountingQuery.loads == ["a"]  # the lake was not read for rows it could not use


def test_a_pinned_read_of_the_current_version_reads_the_lake(service):
    svc, _clock = service
    svc.stores.state.put("version:test:a", "7")
    result = svc.fetch_at(CountingQuery(), "7")
    assert (result.provenance.tier, result.provenance.version) == ("lake", "7")
    assert result.data["value"].tolist() == [41]
    with pytest.raises(VersionGone):
        svc.fetch_at(CountingQuery(), "unknown")
