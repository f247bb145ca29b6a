"""Single flight: when many callers miss one key at once, one reads and the others share it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd
import pytest

from data_access.queries import Query
from data_access.service import DataService, NoData
from data_access.settings import DataSettings
from data_access.single_flight import SingleFlight
from data_access.stores import Stores, StoreUnavailable
from tests.plugins.faults import wait_until

CALLERS = 8


@dataclass(frozen=True)
class GatedQuery(Query):
    """A load that waits for the test to open its gate, counting how often it ran."""

    kind: ClassVar[str] = "gated"
    gate: ClassVar[threading.Event] = threading.Event()
    loads: ClassVar[list[int]] = []
    fail: ClassVar[bool] = False

    def versions(self) -> list[str]:
        return ["version:test:gated"]

    def load(self, stores: Stores) -> pd.DataFrame:
        GatedQuery.loads.append(1)
        assert GatedQuery.gate.wait(60), "the test never opened the gate"
        if GatedQuery.fail:
            raise StoreUnavailable("lake down")
        return pd.DataFrame({"value": [42]})


@pytest.fixture
def service(local_stores: Stores, local_settings: DataSettings) -> DataService:
    GatedQuery.gate.clear()
    GatedQuery.loads.clear()
    GatedQuery.fail = False
    settings = local_settings.model_copy(update={"memo_seconds": 10, "version_memo_seconds": 0})
    return DataService(local_stores, settings)


def fetch_together(service: DataService) -> list:
    """CALLERS fetches of one query at once; the gate opens once all but the leader wait."""
    key = service.cache_key(GatedQuery(), service.version(GatedQuery()))
    with ThreadPoolExecutor(CALLERS) as pool:
        futures = [pool.submit(service.fetch, GatedQuery()) for _ in range(CALLERS)]
        waiting = wait_until(lambda: service._flights.followers(key) == CALLERS - 1, 30, 0.01)
        GatedQuery.gate.set()
        assert waiting, f"{service._flights.followers(key)} callers waited on the leader"
        outcomes = []
        for future in futures:
            try:
                outcomes.append(future.result(60))
            except Exception as exc:
                outcomes.append(exc)
    return outcomes


def test_concurrent_misses_of_one_version_read_the_lake_once(service: DataService) -> None:
    results = fetch_together(service)
    assert len(GatedQuery.loads) == 1
    assert [r.data["value"].tolist() for r in results] == [[42]] * CALLERS
    assert sorted(r.provenance.tier for r in results) == ["lake"] + ["memory"] * (CALLERS - 1)
    assert (service.counters.lake, service.counters.memory) == (1, CALLERS - 1)


def test_the_leaders_failure_is_every_waiters_answer(service: DataService) -> None:
    GatedQuery.fail = True
    outcomes = fetch_together(service)
    assert len(GatedQuery.loads) == 1  # the others did not queue up behind a failing lake
    assert all(isinstance(o, NoData) for o in outcomes), outcomes


def test_a_stale_answer_stays_marked_stale_for_the_waiters(service: DataService) -> None:
    GatedQuery.gate.set()
    service.fetch(GatedQuery())  # a last good answer
    service.stores.state.put("version:test:gated", "2")
    GatedQuery.gate.clear()
    GatedQuery.loads.clear()
    GatedQuery.fail = True
    results = fetch_together(service)
    assert len(GatedQuery.loads) == 1
    assert {(r.provenance.tier, r.provenance.problem) for r in results} == {
        ("stale", "lake unreachable")
    }


def test_a_flight_ends_with_its_leader() -> None:
    flights: SingleFlight[int] = SingleFlight()
    assert flights.run("k", lambda: None, lambda: 1) == (1, False)
    assert flights.run("k", lambda: None, lambda: 2) == (2, False)
    assert flights.followers("k") == 0


def test_concurrent_misses_of_one_figure_build_it_once() -> None:
    from dashboard.cache import worker_caches
    from dashboard.components.poll import FigureCache

    caches = worker_caches(memo_seconds=10, figure_items=8)
    figures = FigureCache(caches.figures, caches.figure_seconds)
    gate, builds = threading.Event(), []

    def build() -> dict:
        builds.append(1)
        assert gate.wait(60), "the test never opened the gate"
        return {"data": [1]}

    with ThreadPoolExecutor(CALLERS) as pool:
        futures = [pool.submit(figures.get_or_build, "fig", build) for _ in range(CALLERS)]
        waiting = wait_until(lambda: figures._flights.followers("fig") == CALLERS - 1, 30, 0.01)
        gate.set()
        assert waiting
        assert [f.result(60) for f in futures] == [{"data": [1]}] * CALLERS
    assert len(builds) == 1
    assert (figures.misses, figures.hits) == (1, CALLERS - 1)
