"""SIGKILL one gunicorn worker of the production app while operators poll and devices send
events: clients retry and carry on, the master starts a replacement, a browser tab's panels
keep refreshing, and every event the API accepted is stored exactly once.

``tests/live/test_crash.py`` kills workers of the ingest API alone; this is the whole app
(``wsgi:server``: dashboard and ingest in the same workers) under mixed load.
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import psutil
import pyarrow.parquet as pq
import pytest
import requests

from data_access import layout
from data_access.apikeys import create_key
from pipeline.events import compact_events
from tests.integrity.checks import assert_reconciled
from tests.load.operators import DashSite, LoadSummary, run_operators
from tests.plugins.browser import (
    VIEWPORT,
    DashboardServer,
    SampleLake,
    build_sample_lake,
    wait_for_panels,
)
from tests.plugins.faults import wait_until

pytestmark = pytest.mark.browser

OPERATORS = 6
RUN_SECONDS = 24.0
KILL_AFTER_SECONDS = 8.0
RETRIES = 4  # a client's extra attempts; the Dash renderer's next tick is its own retry
EVENTS = 400
EVENT_CLIENTS = 2
EVENT_PAUSE_SECONDS = 0.04  # paced, so the stream is still flowing when the worker dies


@dataclass
class CrashSite:
    server: DashboardServer
    lake: SampleLake
    token: str


@pytest.fixture(scope="module")
def crash_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrashSite]:
    lake = build_sample_lake(
        tmp_path_factory.mktemp("crash"),
        customers=6,
        days=5,
        end_date=dt.datetime.now(dt.UTC).date(),
    )
    token = create_key(
        lake.stores().records,
        "crash-test",
        ["ingest"],
        created_by="test",
        rate_per_second=1e6,
        rate_burst=10**6,
    ).token
    server = DashboardServer(lake)
    try:
        server.start()
        yield CrashSite(server, lake, token)
    finally:
        server.cleanup()


@pytest.fixture
def crash_page(browser, crash_site: CrashSite) -> Iterator[object]:
    context = browser.new_context(viewport=VIEWPORT, base_url=crash_site.server.url)
    context.set_default_timeout(30_000)
    try:
        yield context.new_page()
    finally:
        context.close()


@dataclass
class EventStream:
    """Devices posting page views, each retried until the API answers it."""

    url: str
    token: str
    confirmed: list[str] = field(default_factory=list)  # answered 202 (or 200: already had it)
    retried: int = 0
    refused: list[int] = field(default_factory=list)  # any 4xx: must stay empty
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, event_ids: list[str]) -> None:
        http = requests.Session()
        headers = {"Authorization": f"Bearer {self.token}"}
        for event_id in event_ids:
            event = {
                "event_id": event_id,
                "ts": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "user_id": "u0000001",
                "session_id": "crash-test",
                "page": "/products/p001",
                "referrer": None,
            }
            for _ in range(20):
                try:
                    answer = http.post(
                        f"{self.url}/api/ingest/pageview", json=event, headers=headers, timeout=10
                    )
                except requests.RequestException:
                    http = requests.Session()  # the old connection died with its worker
                    with self.lock:
                        self.retried += 1
                    continue
                if answer.status_code in (200, 202):
                    with self.lock:
                        self.confirmed.append(event_id)
                    break
                if answer.status_code < 500:
                    with self.lock:
                        self.refused.append(answer.status_code)
                    break
            time.sleep(EVENT_PAUSE_SECONDS)


def _workers(server: DashboardServer) -> set[int]:
    assert server.pid is not None
    return {child.pid for child in psutil.Process(server.pid).children()}


def _stored_pageviews(site: CrashSite) -> collections.Counter[str]:
    stores = site.lake.stores()
    counts: collections.Counter[str] = collections.Counter()
    for info in stores.lake.list(f"{layout.PROCESSED_EVENTS}pageview/"):
        table = pq.read_table(site.lake.settings.lake_root / info.key, columns=["event_id"])
        counts.update(table["event_id"].to_pylist())
    return counts


def test_a_killed_worker_is_replaced_and_clients_recover(crash_site: CrashSite, crash_page):
    server, page = crash_site.server, crash_page
    page.goto("/")
    wait_for_panels(page)
    before = _workers(server)
    assert len(before) == 2, before
    killed: dict[str, float | int | bool] = {}

    stream = EventStream(server.url, crash_site.token)
    event_ids = [uuid.uuid4().hex for _ in range(EVENTS)]
    devices = [
        threading.Thread(target=stream.send, args=(event_ids[n::EVENT_CLIENTS],), daemon=True)
        for n in range(EVENT_CLIENTS)
    ]
    for device in devices:
        device.start()

    def kill_one_worker(stop: threading.Event) -> None:
        if stop.wait(KILL_AFTER_SECONDS):
            return
        victim = min(before)
        killed.update(pid=victim, at=time.monotonic(), events_before=len(stream.confirmed))
        os.kill(victim, signal.SIGKILL)

        def replaced() -> bool:
            now = _workers(server)
            return len(now - before) == 1 and victim not in now

        killed["replaced"] = wait_until(replaced, timeout=30)

    operators = run_operators(
        DashSite(server.url),
        count=OPERATORS,
        seconds=RUN_SECONDS,
        pages=[("/", ""), ("/screen-time", ""), ("/revenue", "")],
        refresh_seconds=1.0,
        retries=RETRIES,
        during=kill_one_worker,
    )
    for device in devices:
        device.join(120)
    assert not any(device.is_alive() for device in devices), "a device never finished"

    assert killed.get("replaced"), f"no replacement for worker {killed.get('pid')}"
    assert 0 < int(killed["events_before"]) < EVENTS, "the kill missed the event stream"
    # Operators: every request answered in the end, and answers kept coming after the kill.
    samples = [sample for operator in operators for sample in operator.samples]
    summary = LoadSummary.of(samples)
    assert summary.errors == 0, [s for s in samples if s.status not in (200, 204)][:10]
    assert summary.degraded == 0, summary
    settled = float(killed["at"]) + 3.0
    for operator in operators:
        later = [s for s in operator.samples if s.at > settled and s.status in (200, 204)]
        assert later, "an operator stopped getting answers after the kill"
    # The browser tab keeps polling after the kill (no poll left stuck in flight): its next
    # ticks are answered, whichever worker takes them.
    for _ in range(2):
        with page.expect_response(
            lambda response: response.url.endswith("/poll") and response.status in (200, 204),
            timeout=30_000,
        ):
            pass
    assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200

    # Devices: every event got through, and what the API accepted is stored exactly once.
    assert stream.refused == []
    assert sorted(set(stream.confirmed)) == sorted(event_ids)
    compact_events(crash_site.lake.stores())
    stored = _stored_pageviews(crash_site)
    assert set(event_ids) <= set(stored)
    assert max(stored[event_id] for event_id in event_ids) == 1, "an event stored twice"
    assert_reconciled(crash_site.lake.stores())
    print(
        "worker crash:",
        {
            "requests": summary.requests,
            "retried_requests": summary.retried,
            "events": len(event_ids),
            "event_retries": stream.retried,
            "events_before_kill": killed["events_before"],
        },
    )
