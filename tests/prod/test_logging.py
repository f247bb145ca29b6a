"""Structured logs: JSON lines, a request id that reaches data_access, the ALB trace id kept."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import requests
from flask import Flask, abort, g, jsonify

from dashboard.observability import (
    REQUEST_ID_HEADER,
    TRACE_ID_HEADER,
    configure_logging,
    current_request_id,
    request_id_hooks,
)
from dashboard.request_hooks import register_hooks
from data_access.queries import FleetDailyQuery
from data_access.service import DataService
from data_access.settings import DataSettings
from data_access.stores import Stores, StoreUnavailable
from tests.prod.processes import gunicorn_instance

TRACE = "Root=1-67891233-abcdef012345678912345678;Parent=53995c3f42cd8ad8;Sampled=1"
TRACE_ROOT = "1-67891233-abcdef012345678912345678"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """JSON logging into a buffer; the root logger is restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    yield stream
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def json_lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class UnreachableCache:
    def get(self, key: str) -> bytes | None:
        raise StoreUnavailable("cache table unreachable (test)")

    def put(self, key: str, value: bytes, ttl_seconds: int) -> None:
        raise StoreUnavailable("cache table unreachable (test)")


def app_with_request_ids() -> Flask:
    app = Flask("request-id-test")
    register_hooks(app, request_id_hooks())

    @app.get("/id")
    def request_id():
        return jsonify(g=g.request_id, context=current_request_id(), trace=g.trace_id)

    return app


# ------------------------------------------------------------------------------ JSON lines


def test_every_line_is_one_json_object_with_the_usual_fields(log_stream: io.StringIO) -> None:
    log = logging.getLogger("tests.prod.sample")
    log.info("plain %s", "message", extra={"customer": "c-17"})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it failed")
    first, second = json_lines(log_stream)
    assert first["message"] == "plain message"
    assert first["level"] == "INFO" and first["logger"] == "tests.prod.sample"
    assert first["customer"] == "c-17", "extra fields are kept"
    assert dt.datetime.fromisoformat(first["ts"]).tzinfo is not None
    assert "request_id" not in first, "outside a request there is no id"
    assert second["level"] == "ERROR"
    assert "ValueError: boom" in second["exc_info"]


def test_configure_logging_twice_leaves_one_handler(log_stream: io.StringIO) -> None:
    configure_logging("WARNING", stream=log_stream)
    logging.getLogger("tests.prod.sample").warning("once")
    logging.getLogger("tests.prod.sample").info("filtered out by the new level")
    assert [line["message"] for line in json_lines(log_stream)] == ["once"]


# ------------------------------------------------------------------------------ request ids


def test_request_id_comes_from_the_header_then_the_trace_then_is_made() -> None:
    client = app_with_request_ids().test_client()
    given = client.get("/id", headers={REQUEST_ID_HEADER: "req-42", TRACE_ID_HEADER: TRACE})
    assert given.json == {"g": "req-42", "context": "req-42", "trace": TRACE}
    assert given.headers[REQUEST_ID_HEADER] == "req-42"
    traced = client.get("/id", headers={TRACE_ID_HEADER: TRACE})
    assert traced.json["g"] == TRACE_ROOT, "the ALB's trace root ties our logs to its logs"
    made = [client.get("/id").json["g"] for _ in range(2)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", made_id) for made_id in made)
    assert made[0] != made[1]


def test_a_request_id_that_is_not_a_plain_token_is_replaced() -> None:
    client = app_with_request_ids().test_client()
    for unsafe in ("has space", "x" * 300, '"quoted"', "é"):
        answer = client.get("/id", headers={REQUEST_ID_HEADER: unsafe})
        assert answer.json["g"] != unsafe
        assert re.fullmatch(r"[0-9a-f]{32}", answer.headers[REQUEST_ID_HEADER])


def test_requests_refused_by_a_later_hook_still_get_an_id() -> None:
    app = Flask("refusing")
    register_hooks(app, request_id_hooks())

    @app.before_request
    def refuse() -> None:  # runs after the id is bound, as the auth guard does in create_app
        abort(403)

    answer = app.test_client().get("/anything", headers={REQUEST_ID_HEADER: "refused-1"})
    assert answer.status_code == 403
    assert answer.headers[REQUEST_ID_HEADER] == "refused-1"


def test_request_id_reaches_data_access_log_lines(
    log_stream: io.StringIO, local_settings: DataSettings, local_stores: Stores
) -> None:
    service = DataService(replace(local_stores, cache=UnreachableCache()), local_settings)
    app = app_with_request_ids()
    today = dt.date(2024, 5, 31)

    @app.get("/fleet")
    def fleet():
        result = service.fetch(FleetDailyQuery(today - dt.timedelta(days=6), today))
        return jsonify(tier=result.provenance.tier)

    answer = app.test_client().get(
        "/fleet", headers={REQUEST_ID_HEADER: "req-fleet-1", TRACE_ID_HEADER: TRACE}
    )
    assert answer.status_code == 200
    logging.getLogger("data_access.service").warning("after the request")
    lines = json_lines(log_stream)
    from_data_access = [
        line
        for line in lines
        if line["logger"] == "data_access.service" and "cache read failed" in line["message"]
    ]
    assert from_data_access, lines
    assert all(line["request_id"] == "req-fleet-1" for line in from_data_access)
    assert all(line["trace_id"] == TRACE for line in from_data_access)
    assert "request_id" not in lines[-1], "the id is cleared when the request ends"


# ------------------------------------------------------------------------------ gunicorn


def _one_worker_gunicorn(tmp_path: Path, **env: str):
    """The image's command with one worker of two threads, on a local lake, dev sign-in."""
    return gunicorn_instance(
        "gunicorn",
        tmp_path / "gunicorn",
        {
            "DATA_BACKEND": "local",
            "LAKE_ROOT": str(tmp_path / "lake"),
            "STATE_DB": str(tmp_path / "state.sqlite"),
            "AUTH_MODE": "dev",
            "SECRET_KEY": "x" * 64,
            "WEB_CONCURRENCY": "1",
            "GUNICORN_THREADS": "2",
            **env,
        },
    )


def test_gunicorn_access_log_is_json_with_request_and_trace_ids(tmp_path: Path) -> None:
    """The image's command: every access line is JSON and carries both ids."""
    server = _one_worker_gunicorn(tmp_path)
    server.start()
    try:
        sent = time.perf_counter()
        answer = requests.get(
            f"{server.url}/healthz",
            headers={REQUEST_ID_HEADER: "req-access-1", TRACE_ID_HEADER: TRACE},
            timeout=10,
        )
        round_trip_ms = (time.perf_counter() - sent) * 1000
        assert answer.status_code == 200
        assert answer.headers.get(REQUEST_ID_HEADER) == "req-access-1", (
            "create_app() must register dashboard.observability.bind_request_id first"
        )
        deadline = time.monotonic() + 10
        ours: list[dict] = []
        while not ours and time.monotonic() < deadline:
            entries = [json.loads(x) for x in server.log_lines() if x.startswith("{")]
            ours = [
                e
                for e in entries
                if e.get("logger") == "gunicorn.access" and e.get("request_id") == "req-access-1"
            ]
            time.sleep(0.1)
    finally:
        server.stop()
    assert len(ours) == 1, server.log_tail()
    [entry] = ours
    assert entry["path"] == "/healthz"
    assert entry["status"] == 200 and entry["method"] == "GET"
    assert entry["request_id"] == "req-access-1"
    assert entry["trace_id"] == TRACE
    # Milliseconds, measured inside the round trip the client saw (a unit slip fails here).
    assert 0 < entry["duration_ms"] <= round_trip_ms
    # gunicorn's own messages are JSON too (the master's start-up lines, for one).
    starts = [
        json.loads(line)
        for line in server.log_lines()
        if line.startswith("{") and "Listening at" in line
    ]
    assert starts and starts[0]["logger"] == "gunicorn.error"


def test_a_worker_past_its_memory_limit_is_replaced_and_the_service_keeps_answering(
    tmp_path: Path,
) -> None:
    """GUNICORN_MAX_WORKER_MB=1: every worker is past it, so each recycles after its first
    memory check; requests keep being answered throughout."""
    server = _one_worker_gunicorn(tmp_path, GUNICORN_MAX_WORKER_MB="1")
    server.start()
    try:
        recycled: list[str] = []
        deadline = time.monotonic() + 60
        while not recycled and time.monotonic() < deadline:
            for _ in range(64):
                # A new connection each time: a recycling worker closes its kept-alive ones,
                # while the master's socket queues new ones for the replacement.
                answer = requests.get(
                    f"{server.url}/healthz", headers={"Connection": "close"}, timeout=10
                )
                assert answer.status_code == 200
            booted = [line for line in server.log_lines() if "Booting worker" in line]
            recycled = booted[1:]  # the master started a replacement
    finally:
        server.stop()
    assert recycled, server.log_tail()
    assert any("recycles: RSS" in line for line in server.log_lines())
