"""Benchmark of the ingest path: accepted events per second with durability on and off, and
the time to compact and roll up one day of events.

Durability off (write without fsync) exists only here, to show what the fsync costs; the
service itself always writes durably. The server is gunicorn with the production worker
model (2 workers x 4 threads) on loopback; clients are threads with keep-alive sessions.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import requests
from flask import Flask, jsonify

from data_access.apikeys import create_key
from data_access.factory import build_stores
from data_access.local import LocalLake
from data_access.settings import DataSettings
from devtools.servers import REPO_ROOT, free_port, gunicorn_command
from live.ingest import register_ingest
from live.settings import IngestSettings


class UnsyncedLake(LocalLake):
    """The local lake without fsync: a crash of the machine may lose what it wrote."""

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)


def bench_app(durable: bool = True) -> Flask:
    """The ingest API alone over the lake in the environment; gunicorn calls this."""
    data_settings = DataSettings.from_env()
    stores = build_stores(data_settings)
    if not durable:
        stores = replace(stores, lake=UnsyncedLake(data_settings.lake_root))
    server = Flask(__name__)
    register_ingest(server, stores, IngestSettings.from_env())

    @server.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    return server


@contextlib.contextmanager
def gunicorn_server(
    app: str, env: dict[str, str], folder: Path, *, workers: int = 2, threads: int = 4
) -> Iterator[str]:
    """gunicorn on a free loopback port; yields its base URL, stops it (whole group) after."""
    port = free_port()
    home = folder / "home"
    home.mkdir(parents=True, exist_ok=True)
    log = open(folder / "gunicorn.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        gunicorn_command(
            app,
            port,
            config=None,
            workers=workers,
            threads=threads,
            worker_class="gthread",
            graceful_timeout_seconds=5,
        ),
        cwd=REPO_ROOT,
        env={**os.environ, **env, "HOME": str(home), "XDG_RUNTIME_DIR": str(home)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {(folder / 'gunicorn.log').read_text()}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not answer within 30 s")
            time.sleep(0.1)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def _event(n: int, ts: str) -> dict:
    return {
        "event_id": f"bench-{uuid.uuid4().hex}",
        "ts": ts,
        "user_id": f"u{n % 5000:07d}",
        "session_id": f"s{n % 700}",
        "page": f"/products/p{n % 40:03d}",
        "referrer": None,
    }


def _send_stream(base: str, token: str, count: int, clients: int, batch: int) -> tuple[int, float]:
    """Send ``count`` page views from ``clients`` threads; (accepted, seconds).

    Plain ``http.client`` keep-alive connections: the client shares the machine's cores with
    the server, so it should cost as little as possible.
    """
    ts = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    accepted = [0] * clients
    per_client = count // clients
    host, port = urlsplit(base).hostname, urlsplit(base).port

    def client(index: int) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=30)
        sent = 0
        while sent < per_client:
            size = min(batch, per_client - sent)
            events = [_event(index * per_client + sent + k, ts) for k in range(size)]
            if batch == 1:
                path, media = "/api/ingest/pageview", "application/json"
                body = json.dumps(events[0]).encode()
            else:
                path, media = "/api/ingest/batch", "application/x-ndjson"
                body = "".join(json.dumps({**e, "event_type": "pageview"}) + "\n" for e in events)
                body = body.encode()
            headers = {"Authorization": f"Bearer {token}", "Content-Type": media}
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            if response.status == 202:
                accepted[index] += json.loads(answer)["accepted"]
            sent += size
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(accepted), time.perf_counter() - started


def _ingest_rate(folder: Path, *, durable: bool, count: int, clients: int, batch: int) -> float:
    folder.mkdir(parents=True, exist_ok=True)
    settings = DataSettings(lake_root=folder / "lake", state_db=folder / "state.sqlite")
    stores = build_stores(settings)
    # The limiter still runs (its cost is part of every request); the key's limit is just high.
    token = create_key(
        stores.records,
        "bench",
        ["ingest"],
        created_by="bench",
        rate_per_second=1e6,
        rate_burst=10**6,
    ).token
    env = {"LAKE_ROOT": str(settings.lake_root), "STATE_DB": str(settings.state_db)}
    app = f"bench.ingest:bench_app(durable={durable})"
    with gunicorn_server(app, env, folder) as base:
        _send_stream(base, token, min(200, count), clients, batch)  # warm up
        accepted, seconds = _send_stream(base, token, count, clients, batch)
    if accepted < count - count % clients:
        raise RuntimeError(f"only {accepted} of {count} events accepted")
    return accepted / seconds


def _day_rollup(folder: Path, customers: int) -> dict:
    from pipeline.events import compact_events
    from pipeline.generate import generate
    from pipeline.rollup import rollup_business

    day = dt.date(2026, 11, 2)
    stores = build_stores(
        DataSettings(lake_root=folder / "day" / "lake", state_db=folder / "day" / "state.sqlite")
    )
    summary = generate(
        stores.lake, queue=stores.queue, customers=customers, days=1, seed=3, end_date=day, hosts=0
    )
    started = time.perf_counter()
    compacted = compact_events(stores)
    compact_seconds = time.perf_counter() - started
    started = time.perf_counter()
    rollup_business(stores, dates=[day.isoformat()])
    rollup_seconds = time.perf_counter() - started
    return {
        "day_events": summary.events,
        "day_event_rows": compacted.rows,
        "day_compact_seconds": compact_seconds,
        "day_rollup_seconds": rollup_seconds,
    }


def bench_ingest(folder: Path, *, full: bool = False) -> dict:
    """Figures for ``make bench``: events/s durable and not, ratio, and a day's rollup time."""
    count = 6000 if full else 2000
    clients = 8
    result: dict[str, float | int] = {"clients": clients, "events": count}
    for batch in (1, 100):
        durable = _ingest_rate(
            folder / f"durable-{batch}", durable=True, count=count, clients=clients, batch=batch
        )
        unsynced = _ingest_rate(
            folder / f"unsynced-{batch}", durable=False, count=count, clients=clients, batch=batch
        )
        name = "single" if batch == 1 else f"batch{batch}"
        result[f"{name}_durable_events_per_second"] = durable
        result[f"{name}_unsynced_events_per_second"] = unsynced
        result[f"{name}_durability_ratio"] = durable / unsynced
    result.update(_day_rollup(folder, customers=500 if full else 100))
    return result


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mc-ingest-bench-") as scratch:
        print(json.dumps(bench_ingest(Path(scratch), full="--full" in sys.argv), indent=2))
