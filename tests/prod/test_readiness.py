"""``/readyz``: names every part, says which fail with 503, never hangs on a hung store."""

from __future__ import annotations

import http.server
import io
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest
from flask import Flask

from auth.settings import AuthSettings
from dashboard.observability import configure_logging
from dashboard.readiness import ReadinessSettings, register_readiness
from data_access.stores import Stores, StoreUnavailable
from devtools.servers import LOOPBACK, free_port

SECRET_DETAIL = "dynamodb cache mc-secret-table at 10.1.2.3"


class UnreachableCache:
    def get(self, key: str) -> bytes | None:
        raise StoreUnavailable(SECRET_DETAIL)

    def put(self, key: str, value: bytes, ttl_seconds: int) -> None:
        raise StoreUnavailable(SECRET_DETAIL)


class HungLake:
    """A lake whose ``exists`` blocks until released, like a connection that never answers."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def exists(self, key: str) -> bool:
        self.release.wait(30)
        return False


def ready_client(stores: Stores, settings: ReadinessSettings | None = None):
    app = Flask("readiness-test")
    register_readiness(app, stores, settings or ReadinessSettings(timeout_seconds=2.0))
    return app.test_client()


@pytest.fixture
def discovery_server() -> Iterator[dict]:
    """A loopback server answering the discovery document with ``state["issuer"]``."""
    state = {"issuer": "", "status": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"issuer": state["issuer"]}).encode()
            self.send_response(state["status"])
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
    state["issuer"] = f"http://{LOOPBACK}:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_ready_when_every_part_answers(local_stores: Stores) -> None:
    answer = ready_client(local_stores).get("/readyz")
    assert answer.status_code == 200
    assert answer.json["status"] == "ready" and answer.json["failing"] == []
    assert set(answer.json["checks"]) == {"cache_table", "state_store", "lake"}
    assert all(check["ok"] for check in answer.json["checks"].values())
    assert answer.headers["Cache-Control"] == "no-store"


def test_a_failing_part_is_named_and_its_details_only_logged(local_stores: Stores) -> None:
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    try:
        answer = ready_client(replace(local_stores, cache=UnreachableCache())).get("/readyz")
    finally:
        handlers, level = saved
        root.handlers[:] = handlers
        root.setLevel(level)
    assert answer.status_code == 503
    assert answer.json["failing"] == ["cache_table"]
    assert answer.json["checks"]["cache_table"] == {"ok": False, "error": "StoreUnavailable"}
    assert answer.json["checks"]["lake"]["ok"] is True
    assert "10.1.2.3" not in answer.get_data(as_text=True), "the public answer leaks no endpoint"
    assert SECRET_DETAIL in stream.getvalue(), "the operator finds the detail in the log"


def test_a_hung_part_times_out_instead_of_hanging_the_probe(local_stores: Stores) -> None:
    lake = HungLake()
    client = ready_client(replace(local_stores, lake=lake), ReadinessSettings(timeout_seconds=0.3))
    try:
        answer = client.get("/readyz")
    finally:
        lake.release.set()
    assert answer.status_code == 503
    assert answer.json["failing"] == ["lake"]
    assert answer.json["checks"]["lake"]["error"].startswith("timed out")
    assert answer.json["checks"]["cache_table"]["ok"] is True


def test_identity_provider_checked_against_the_configured_issuer(
    local_stores: Stores, discovery_server: dict
) -> None:
    issuer = discovery_server["issuer"]
    settings = ReadinessSettings.from_auth(
        AuthSettings(mode="oidc", oidc_issuer=issuer), timeout_seconds=2.0
    )
    assert settings.identity_provider_url == f"{issuer}/.well-known/openid-configuration"
    client = ready_client(local_stores, settings)
    assert client.get("/readyz").json["checks"]["identity_provider"]["ok"] is True
    discovery_server["issuer"] = "https://someone-else.example"
    wrong = client.get("/readyz")
    assert wrong.status_code == 503 and wrong.json["failing"] == ["identity_provider"]
    discovery_server["status"] = 500
    assert client.get("/readyz").json["checks"]["identity_provider"]["error"] == "CheckFailed"


def test_unreachable_identity_provider_fails_readiness(local_stores: Stores) -> None:
    closed = f"http://{LOOPBACK}:{free_port()}"
    settings = ReadinessSettings.from_auth(AuthSettings(mode="oidc", oidc_issuer=closed))
    answer = ready_client(local_stores, settings).get("/readyz")
    assert answer.status_code == 503 and answer.json["failing"] == ["identity_provider"]


def test_provider_checked_only_where_the_app_talks_to_it() -> None:
    issuer = "https://idp.example"
    for mode in ("alb", "dev"):
        settings = ReadinessSettings.from_auth(AuthSettings(mode=mode, oidc_issuer=issuer))
        assert settings.identity_provider_url is None, mode
