"""The simulator through the real ingest API over HTTP, and rollups that equal a
recomputation from the raw events, also after retries and late events."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import defaultdict

import pytest
import requests
from flask import Flask
from werkzeug.serving import make_server

from data_access import layout
from data_access.apikeys import create_key
from live.ingest import register_ingest
from live.settings import IngestSettings
from pipeline.events import compact_events
from pipeline.rollup import rollup_business
from pipeline.schema import validate_event_line
from pipeline.simulate import SimulateOptions, check_target, simulate
from tests.live.factories import pageview, purchase, utc_ts


@pytest.fixture
def ingest_url(local_stores):
    server = Flask("simulate")
    register_ingest(server, local_stores, IngestSettings(rate_per_second=1e4, rate_burst=10**5))
    server.get("/healthz")(lambda: "ok")
    http = make_server("127.0.0.1", 0, server, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_port}"
    http.shutdown()


@pytest.fixture
def ingest_token(local_stores) -> str:
    return create_key(local_stores.records, "sim", ["ingest"], created_by="t").token


def recompute_from_raw(stores) -> dict[str, dict]:
    """Business stats per day straight from the raw lines: valid, first of each id."""
    seen: set[tuple[str, str]] = set()
    days: dict[str, dict] = defaultdict(
        lambda: {
            "revenue": 0.0,
            "orders": set(),
            "visitors": set(),
            "buyers": set(),
            "users": set(),
            "pageviews": 0,
        }
    )
    for info in stores.lake.list(layout.RAW_EVENTS):
        event_type = info.key.split("/")[2]
        for line in stores.lake.read_bytes(info.key).splitlines():
            record = validate_event_line(line, event_type).record
            if record is None or (event_type, record["event_id"]) in seen:
                continue
            seen.add((event_type, record["event_id"]))
            day = days[record["ts"].date().isoformat()]
            day["users"].add(record["user_id"])
            if event_type == "purchase":
                day["revenue"] += record["amount"]
                day["orders"].add(record["order_id"])
                day["buyers"].add(record["user_id"])
            elif event_type == "pageview":
                day["visitors"].add(record["user_id"])
                day["pageviews"] += 1
    return {
        date: {
            "revenue": round(d["revenue"], 2),
            "orders": len(d["orders"]),
            "visitors": len(d["visitors"]),
            "buyers": len(d["buyers"]),
            "dau": len(d["users"]),
            "pageviews": d["pageviews"],
        }
        for date, d in days.items()
    }


def rolled_up(stores, dates: list[str]) -> dict[str, dict]:
    stats = stores.lake.read_table([layout.business_rollup_key(d, "stats") for d in dates])
    return {
        row["day"]: {
            k: row[k] for k in ("revenue", "orders", "visitors", "buyers", "dau", "pageviews")
        }
        for row in stats.to_pylist()
    }


def run_pipeline(stores, dates: list[str]) -> dict[str, dict]:
    compact_events(stores)
    rollup_business(stores, dates=dates)
    return rolled_up(stores, dates)


def test_simulated_traffic_rolls_up_to_what_the_raw_events_say(
    local_stores, ingest_url, ingest_token
):
    summary = simulate(
        SimulateOptions(
            base_url=ingest_url,
            api_key=ingest_token,
            rate=5000,
            count=400,
            batch_size=1,
            purchase_share=0.3,
            seed=4,
        )
    )
    assert summary.sent == 400
    assert summary.accepted == 400 and summary.failed == 0 and summary.rejected == 0
    assert set(summary.by_type) == {"pageview", "purchase", "custom"}

    batched = simulate(
        SimulateOptions(
            base_url=ingest_url, api_key=ingest_token, rate=5000, count=250, batch_size=50, seed=5
        )
    )
    assert batched.accepted == 250

    # A day earlier: a repeat inside one batch, and later a late event after the rollup.
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    old_purchase = {**purchase(ts=utc_ts(yesterday), amount=120.5), "event_type": "purchase"}
    old_view = {**pageview(ts=utc_ts(yesterday)), "event_type": "pageview"}
    body = "".join(json.dumps(e) + "\n" for e in (old_purchase, old_view, old_view))
    response = requests.post(
        f"{ingest_url}/api/ingest/batch",
        data=body,
        headers={"Authorization": f"Bearer {ingest_token}", "Content-Type": "application/x-ndjson"},
        timeout=10,
    )
    assert response.status_code == 202 and response.json()["duplicates"] == 1

    dates = sorted(recompute_from_raw(local_stores))
    assert len(dates) == 2
    first = run_pipeline(local_stores, dates)
    assert first == recompute_from_raw(local_stores)
    assert run_pipeline(local_stores, dates) == first  # a retried run counts nothing twice

    late = {**purchase(ts=utc_ts(yesterday), amount=9.5), "event_type": "purchase"}
    response = requests.post(
        f"{ingest_url}/api/ingest/batch",
        data=json.dumps(late) + "\n",
        headers={"Authorization": f"Bearer {ingest_token}", "Content-Type": "application/x-ndjson"},
        timeout=10,
    )
    assert response.status_code == 202
    after = run_pipeline(local_stores, dates)
    assert after == recompute_from_raw(local_stores)
    assert after[dates[0]]["revenue"] == pytest.approx(first[dates[0]]["revenue"] + 9.5)


def test_simulator_sends_only_to_loopback_unless_allowed():
    for url in ("http://127.0.0.1:8050", "http://localhost:8050", "http://[::1]:8050"):
        check_target(url, allow_remote=False)
    for url in ("http://10.0.0.5:8050", "https://example.com", "http://127.0.0.1.evil.example/"):
        with pytest.raises(ValueError):
            check_target(url, allow_remote=False)
    check_target("https://example.com", allow_remote=True)
    with pytest.raises(ValueError):
        check_target("ftp://127.0.0.1/", allow_remote=True)
    with pytest.raises(ValueError):
        SimulateOptions(base_url="http://127.0.0.1:1", api_key="k")  # unbounded run


def test_simulator_stops_at_its_duration(local_stores, ingest_url, ingest_token):
    summary = simulate(
        SimulateOptions(
            base_url=ingest_url, api_key=ingest_token, rate=20, duration_seconds=0.5, seed=1
        )
    )
    assert 0 < summary.sent <= 20  # 20 events/s for half a second, plus the first
    assert summary.accepted == summary.sent


def test_simulator_cli_reports_and_fails_on_rejections(local_stores, ingest_url, capsys):
    from pipeline.cli import main

    code = main(["simulate", "--url", ingest_url, "--api-key", "mck_bad", "--count", "2"])
    assert code == 1
    result = json.loads(capsys.readouterr().out)
    assert result["rejected"] == 2 and result["statuses"] == {"401": 2}
    assert main(["simulate", "--url", "http://10.9.9.9:1", "--api-key", "k", "--count", "1"]) == 2
