"""Data that changes while operators watch, at production's pace, against the lake the app reads.

Production moves the dashboard's data so: shop events arrive every second (the ingest API
writes them to ``raw/events``), the collector samples host metrics every 10 s, the alerts
job compacts the current hour's metrics every minute, and the pipeline job compacts events
and metrics and rolls up every 5 minutes (``pipeline.scheduler``). ``python -m
bench.production_data`` does the same with the scheduler's own jobs, in its own process (so
it never shares the load generator's interpreter), until it is terminated.

``move_everything`` moves every version a page shows at once: the recorder calls it to
record the requests a changed tick sets off.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import random
import signal
import threading
import time
import uuid
from pathlib import Path

from data_access import layout
from data_access.factory import build_stores
from data_access.settings import DataSettings
from data_access.stores import Stores
from live.ingest import raw_event_key
from pipeline.collectors import CollectorSettings
from pipeline.generate import customer_profile, screen_time_upload
from pipeline.process import drain
from pipeline.scheduler import SchedulerSettings, run_pipeline, run_scheduler
from pipeline.simulate import SimulateOptions, visits

EVENT_EVERY_S = 1.0
SERVING_SEED = 17  # bench.serving's sample lake


def stores_of(lake_root: Path, state_db: Path) -> Stores:
    return build_stores(DataSettings(lake_root=lake_root, state_db=state_db))


def write_events(stores: Stores, rng: random.Random, count: int = 5) -> str:
    """One ingest batch of ``count`` shop events, as the ingest API stores it."""
    options = SimulateOptions(base_url="http://127.0.0.1", api_key="-", count=count)
    stream = visits(rng, options, time.time)
    lines = [json.dumps(next(stream), separators=(",", ":")).encode() for _ in range(count)]
    hour = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    key = raw_event_key("pageview", hour, uuid.uuid4().hex)
    by_type: dict[str, list[bytes]] = {}
    for line in lines:
        by_type.setdefault(json.loads(line)["event_type"], []).append(line)
    for event_type, group in by_type.items():
        key = raw_event_key(event_type, hour, uuid.uuid4().hex)
        stores.lake.write_bytes(key, b"\n".join(group) + b"\n")
    return key


def upload_again(stores: Stores, customer_number: int, end_date: dt.date) -> str | None:
    """A new upload of the customer's latest day with sessions, one session a second longer:
    a new content hash, so the customer's data version moves as a device's re-upload does."""
    profile = customer_profile(SERVING_SEED, customer_number, end_date)
    for back in range(30):
        day = end_date - dt.timedelta(days=back)
        data = screen_time_upload(SERVING_SEED, profile, day)
        if data is None or not json.loads(data)["sessions"]:
            continue
        upload = json.loads(data)
        session = upload["sessions"][-1]
        end = dt.datetime.fromisoformat(session["end"]) + dt.timedelta(
            seconds=1 + int(time.time()) % 7
        )
        session["end"] = end.isoformat()
        key = layout.raw_upload_key(profile.customer_id, day.isoformat())
        stores.lake.write_bytes(key, json.dumps(upload).encode())
        stores.queue.send([key])
        return key
    return None


def move_everything(stores: Stores, customer_number: int, end_date: dt.date) -> None:
    """Every kind of change at once: events, a re-upload, a probe of host metrics, the
    pipeline run (drain, compaction, rollups)."""
    write_events(stores, random.Random())
    upload_again(stores, customer_number, end_date)
    drain(stores)
    run_pipeline(stores)


def run(lake_root: Path, state_db: Path, stop: threading.Event) -> None:
    """The scheduler's pipeline (5 min), alerts (1 min) and collect (10 s) jobs, and a
    batch of shop events every second, until ``stop``."""
    stores = stores_of(lake_root, state_db)
    settings = dataclasses.replace(
        SchedulerSettings(),
        jobs=("pipeline", "alerts", "collect"),
        collectors=CollectorSettings(host="bench-host"),
    )
    scheduler = threading.Thread(target=run_scheduler, args=(stores, settings, stop), daemon=True)
    scheduler.start()
    rng = random.Random(5)
    while not stop.wait(EVENT_EVERY_S):
        write_events(stores, rng)
    scheduler.join(90)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.production_data")
    parser.add_argument("--lake-root", type=Path, required=True)
    parser.add_argument("--state-db", type=Path, required=True)
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run(args.lake_root, args.state_db, stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
