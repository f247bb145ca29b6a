"""Crash test: gunicorn workers killed with SIGKILL mid-stream lose nothing that got a 2xx,
and after compaction every such event is present exactly once."""

from __future__ import annotations

import collections
import json
import os
import signal
import threading
import time

import pyarrow.parquet as pq
import requests

from data_access import layout
from data_access.apikeys import create_key
from data_access.factory import build_stores
from data_access.settings import DataSettings
from pipeline.events import compact_events
from tests.live.factories import GunicornApp, pageview

EVENTS = 2000
CLIENTS = 4
KILL_AFTER = (500, 1200)  # accepted events before each SIGKILL


class Stream:
    """Client threads sending a bounded stream, retrying an event until it gets an answer."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.confirmed: list[str] = []  # 202, or 200 "already stored"
        self.connection_errors = 0
        self.lock = threading.Lock()

    def run_client(self, events: list[dict]) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.token}"
        for event in events:
            for _attempt in range(20):
                try:
                    response = session.post(
                        f"{self.url}/api/ingest/pageview", json=event, timeout=10
                    )
                except requests.RequestException:
                    with self.lock:
                        self.connection_errors += 1
                    session = requests.Session()
                    session.headers["Authorization"] = f"Bearer {self.token}"
                    continue
                if response.status_code in (200, 202):
                    with self.lock:
                        self.confirmed.append(event["event_id"])
                    break
                assert response.status_code >= 500, response.text  # never a client error


def test_sigkill_mid_stream_loses_nothing_confirmed(tmp_path):
    settings = DataSettings(lake_root=tmp_path / "lake", state_db=tmp_path / "state.sqlite")
    stores = build_stores(settings)
    token = create_key(
        stores.records, "crash", ["ingest"], created_by="t", rate_per_second=1e6, rate_burst=10**6
    ).token
    server = GunicornApp(
        "live.ingest:create_ingest_app()",
        {"LAKE_ROOT": str(settings.lake_root), "STATE_DB": str(settings.state_db)},
    )
    server.start()
    try:
        stream = Stream(server.url, token)
        events = [pageview() for _ in range(EVENTS)]
        clients = [
            threading.Thread(target=stream.run_client, args=(events[n::CLIENTS],))
            for n in range(CLIENTS)
        ]
        for client in clients:
            client.start()
        killed = []
        for threshold in KILL_AFTER:
            deadline = time.monotonic() + 120
            while len(stream.confirmed) < threshold and time.monotonic() < deadline:
                time.sleep(0.005)
            victim = server.worker_pids()[0]
            os.kill(victim, signal.SIGKILL)  # mid-stream: requests are in flight on it
            killed.append(victim)
        for client in clients:
            client.join(timeout=300)
        assert not any(client.is_alive() for client in clients)
    finally:
        server.stop()

    assert len(killed) == 2
    assert len(set(stream.confirmed)) == EVENTS  # every event got through in the end

    summary = compact_events(stores)
    assert summary.quarantined == 0
    keys = [
        info.key
        for info in stores.lake.list(f"{layout.PROCESSED_EVENTS}pageview/")
        if info.key.endswith(".parquet")
    ]
    stored = []
    for key in keys:
        stored += pq.read_table(stores.lake.root / key, columns=["event_id"])[
            "event_id"
        ].to_pylist()
    counts = collections.Counter(stored)
    assert set(stream.confirmed) <= set(counts)
    assert max(counts.values()) == 1, "an event is stored twice"
    assert set(counts) <= {event["event_id"] for event in events}
    raw_lines = sum(
        len(stores.lake.read_bytes(info.key).splitlines())
        for info in stores.lake.list(f"{layout.RAW_EVENTS}pageview/")
    )
    # Retries of events whose 202 was lost may add raw lines; compaction collapses them.
    assert raw_lines >= len(counts)
    print(
        json.dumps(
            {
                "connection_errors": stream.connection_errors,
                "raw_lines": raw_lines,
                "duplicates_collapsed": summary.duplicates,
            }
        )
    )
