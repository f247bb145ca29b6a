"""REDIS_URL: two app instances share one Redis for the memo, the figure cache and the poll
floor; a Redis outage falls back to each instance's own cache and sharing resumes after it.

Each instance is a ``create_app()`` with its own DataService and panel runner, as two
gunicorn workers are; they read one lake and one state file, polled through Flask's test
client the way the browser polls.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from flask import Flask
from flask_caching.backends.simplecache import SimpleCache

from dashboard import create_app
from dashboard.app import Services
from dashboard.cache import EXTENSION_KEY, AppCaches, FallbackCache, init_caches
from dashboard.components.url_state import parse_view_state
from data_access.factory import build_stores
from data_access.settings import DataSettings
from data_access.single_flight import SingleFlight
from devtools.servers import RedisServer
from pipeline.generate import generate
from pipeline.process import drain
from pipeline.rollup import rollup_all
from tests.plugins.faults import wait_until
from tests.plugins.servers import start_server

TODAY = dt.datetime.now(dt.UTC).date()
REVENUE_PANEL = "overview-revenue"


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> DataSettings:
    root = tmp_path_factory.mktemp("shared-cache")
    settings = DataSettings(lake_root=root / "lake", state_db=root / "state.sqlite")
    stores = build_stores(settings)
    generate(stores.lake, queue=stores.queue, customers=3, days=3, seed=7, end_date=TODAY, hosts=1)
    drain(stores)
    rollup_all(stores)
    return settings


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = start_server(RedisServer)
    yield server
    server.cleanup()


@pytest.fixture
def empty_redis(redis_server: RedisServer) -> RedisServer:
    redis_server.start()  # a test that stopped it may have failed before restarting it
    redis_server.client().flushdb()
    return redis_server


@dataclass
class Instance:
    server: Flask

    @property
    def services(self) -> Services:
        return self.server.extensions["mission_control"]

    @property
    def caches(self) -> AppCaches:
        return self.server.extensions[EXTENSION_KEY]

    def poll(self, *, tab: str, view: str = "7d", version: str | None = None):
        """One poll of the overview's revenue figure over the range ``view``, as a browser
        tab sends it."""
        outputs = [(part("figure"), "data"), (part("version"), "data")]
        outputs += [(part("badge"), "children"), (part("status"), "children")]
        body = {
            "output": ".." + "...".join(f"{key(i)}.{p}" for i, p in outputs) + "..",
            "outputs": [{"id": i, "property": p} for i, p in outputs],
            "inputs": [{"id": part("tick"), "property": "data", "value": 1}],
            "state": [
                {"id": part("version"), "property": "data", "value": version},
                {"id": "mc-client", "property": "data", "value": tab},
                {
                    "id": "mc-state",
                    "property": "data",
                    "value": parse_view_state({"range": view}, TODAY).to_store(),
                },
            ],
            "changedPropIds": [f"{key(part('tick'))}.data"],
        }
        return self.server.test_client().post("/_dash-update-component", json=body)

    def answer(self, **poll_args) -> dict:
        response = self.poll(**poll_args)
        assert response.status_code == 200, response.get_data(as_text=True)[:500]
        return response.get_json()["response"]

    def figure(self, **poll_args) -> dict:
        return self.answer(**poll_args)[key(part("figure"))]["data"]


def part(name: str) -> dict[str, str]:
    return {"panel": REVENUE_PANEL, "type": f"mc-{name}"}


def key(component_id: dict[str, str]) -> str:
    return json.dumps(component_id, sort_keys=True, separators=(",", ":"))


def instance(lake: DataSettings, **env: str) -> Instance:
    server = create_app(
        {
            "LAKE_ROOT": str(lake.lake_root),
            "STATE_DB": str(lake.state_db),
            "SECRET_KEY": "test",
            "REFRESH_CHOICES_MS": "60000,120000",  # a floor of 48 s: no test outlives it
            **env,
        }
    )
    assert server.test_client().get("/").status_code == 200
    return Instance(server)


@pytest.fixture
def cache_warnings() -> Iterator[list[str]]:
    """Warnings of dashboard.cache; create_app replaces the root logger's handlers."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger = logging.getLogger("dashboard.cache")
    handler = Collect(logging.WARNING)
    logger.addHandler(handler)
    yield messages
    logger.removeHandler(handler)


def lake_and_table_reads(one: Instance) -> int:
    counters = one.services.data.counters
    return counters.lake + counters.cache


def test_two_instances_share_one_read_and_one_build_per_data_version(lake, empty_redis):
    first = instance(lake, REDIS_URL=empty_redis.url)
    second = instance(lake, REDIS_URL=empty_redis.url)
    assert first.caches.shared and isinstance(first.caches.figures, FallbackCache)

    shown = first.figure(tab="first")
    assert lake_and_table_reads(first) == 1
    assert first.services.panels.figures.misses == 1

    # The other instance answers from Redis: no lake or cache table read, no build.
    assert second.figure(tab="second") == shown
    assert lake_and_table_reads(second) == 0
    assert second.services.data.counters.memory == 1
    assert (second.services.panels.figures.misses, second.services.panels.figures.hits) == (0, 1)
    assert empty_redis.client().keys("mc:figure:*")


def test_the_poll_floor_holds_across_instances(lake, empty_redis):
    first = instance(lake, REDIS_URL=empty_redis.url)
    second = instance(lake, REDIS_URL=empty_redis.url)
    first.figure(tab="wall")
    # The same tab, through the other instance, inside the floor: refused, even for a new
    # version; another tab is answered.
    assert second.poll(tab="wall", version="older").status_code == 204
    assert second.poll(tab="desk", version="older").status_code == 200


def test_a_redis_outage_falls_back_per_instance_and_sharing_resumes(
    lake, empty_redis, cache_warnings
):
    first = instance(lake, REDIS_URL=empty_redis.url)
    second = instance(lake, REDIS_URL=empty_redis.url)
    first.figure(tab="before")

    empty_redis.stop()
    during = first.answer(tab="during", view="30d")
    assert any("Redis unavailable" in message for message in cache_warnings)
    assert first.caches.outage is not None and first.caches.outage.down
    # An unchanged version still answers 204, and the other instance answers on its own.
    shown = during[key(part("version"))]["data"]
    assert first.poll(tab="during-2", view="30d", version=shown).status_code == 204
    assert second.figure(tab="other", view="30d") == during[key(part("figure"))]["data"]
    # Meanwhile each instance caches on its own: a new tab is answered without a build.
    builds, reads = first.services.panels.figures.misses, lake_and_table_reads(first)
    first.figure(tab="during-3", view="30d")
    assert first.services.panels.figures.misses == builds
    assert lake_and_table_reads(first) == reads

    empty_redis.start()  # empty, as a replaced node comes back
    # An instance tries Redis again a few seconds after its last failure.
    assert wait_until(
        lambda: (
            first.poll(tab="after", view="90d").status_code == 200 and not first.caches.outage.down
        ),
        timeout=30,
    )
    assert any("Redis answers again" in message for message in cache_warnings)
    assert empty_redis.client().keys("mc:figure:*")
    assert second.caches.outage is not None
    assert wait_until(second.caches.outage.may_try, timeout=30)
    builds, reads = second.services.panels.figures.misses, lake_and_table_reads(second)
    second.figure(tab="after-2", view="90d")
    assert second.services.panels.figures.misses == builds
    assert lake_and_table_reads(second) == reads


def test_without_redis_each_instance_keeps_its_own_caches(lake):
    first = instance(lake)
    second = instance(lake)
    assert not first.caches.shared
    assert isinstance(first.caches.figures, SimpleCache)
    assert isinstance(first.caches.memo, SimpleCache)

    shown = first.figure(tab="wall")
    assert first.figure(tab="desk") == shown  # built once per instance...
    assert first.services.panels.figures.misses == 1
    assert second.figure(tab="wall") == shown  # ...and again in the other one
    assert second.services.panels.figures.misses == 1
    # The floor is per instance: the same tab through the other instance is answered.
    assert second.poll(tab="desk", version="older").status_code == 200


def test_a_miss_in_two_workers_at_once_is_one_read(empty_redis):
    """Two workers' flights on one key: the one holding the claim reads, the other takes its
    answer from Redis."""
    caches = [
        init_caches(Flask(f"worker{n}"), empty_redis.url, memo_seconds=10, figure_items=8)
        for n in range(2)
    ]
    flights = [SingleFlight(c.claim, c.release) for c in caches]
    gate, produced = threading.Event(), []

    def produce(worker: int) -> str:
        produced.append(worker)
        assert gate.wait(60), "the test never opened the gate"
        caches[worker].memo.set("answer", "read once", timeout=10)
        return "read once"

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(
            flights[0].run, "k", lambda: caches[0].memo.get("answer"), lambda: produce(0)
        )
        assert wait_until(lambda: produced == [0], 30, 0.01)
        looks: list[int] = []

        def second_lookup() -> str | None:
            looks.append(1)
            return caches[1].memo.get("answer")

        second = pool.submit(flights[1].run, "k", second_lookup, lambda: produce(1))
        # The second worker finds the claim taken and watches Redis instead of reading.
        assert wait_until(lambda: len(looks) >= 3, 30, 0.01)
        gate.set()
        assert first.result(60) == ("read once", False)
        assert second.result(60) == ("read once", True)
    assert produced == [0]
    assert flights[1].shared_across_processes == 1
    # The claim ends with its flight, not with its lifetime.
    assert empty_redis.client().get("mc:claim:flight:k") is None


def test_a_claimant_that_never_answers_delays_the_others_once(empty_redis):
    caches = init_caches(Flask("worker"), empty_redis.url, memo_seconds=10, figure_items=8)
    assert caches.claim("flight:k", 30) is True  # a worker that died holding it
    flights: SingleFlight[str] = SingleFlight(caches.claim, caches.release, wait_seconds=0.2)
    assert flights.run("k", lambda: None, lambda: "read here") == ("read here", False)
