"""``make run-aws-local``: the launcher starts the servers, loads a sample, serves the dashboard
on the AWS backend, and stops everything on Ctrl-C.

The launcher runs as the Makefile runs it (``python -m scripts.aws_local`` from the repository
root) in its own process group; Ctrl-C is a SIGINT to that group, as a terminal sends it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pytest
import requests

from dashboard import figures
from dashboard.components.url_state import parse_view_state
from data_access import aws
from data_access.queries import FleetDailyQuery
from data_access.service import DataService
from data_access.settings import DataSettings
from devtools.servers import LOOPBACK, REPO_ROOT, die_with_parent, free_port
from tests.aws.panels import FLEET_TILES, PanelReply, poll_body

pytestmark = pytest.mark.aws

START_TIMEOUT_SECONDS = 150.0
STOP_TIMEOUT_SECONDS = 60.0
# Settings from the caller's shell that would change what the launcher serves.
OUTSIDE_SETTINGS = ("AUTH_MODE", "APP_ENV", "DATA_BACKEND", "S3_BUCKET", "TABLE_PREFIX")


@dataclass
class Launched:
    process: subprocess.Popen[bytes]
    url: str
    env_file: Path
    log_path: Path

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def backend_env(self) -> dict[str, str]:
        env = {}
        for line in self.env_file.read_text().splitlines():
            name, _, value = line.partition("=")
            env[name] = shlex.split(value)[0] if value else ""
        return env


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _accepts_connections(endpoint: str) -> bool:
    parts = urlsplit(endpoint)
    with contextlib.suppress(OSError), socket.create_connection((parts.hostname, parts.port), 1):
        return True
    return False


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    folder = tmp_path_factory.mktemp("aws-local")
    port = free_port()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("AWS_") and name not in OUTSIDE_SETTINGS
    }
    env.update({"WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "2"})
    command = [
        sys.executable,
        "-m",
        "scripts.aws_local",
        "--port",
        str(port),
        "--customers",
        "2",
        "--days",
        "2",
        "--bad",
        "1",
        "--env-file",
        str(folder / "backend.env"),
    ]
    log_path = folder / "launcher.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: Ctrl-C below reaches it and gunicorn
            preexec_fn=die_with_parent(os.getpid()),
        )
    run = Launched(process, f"http://{LOOPBACK}:{port}", folder / "backend.env", log_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not _answers(run.url):
            assert process.poll() is None, f"launcher exited early:\n{run.log_tail()}"
            assert time.monotonic() < deadline, f"no dashboard in time:\n{run.log_tail()}"
            time.sleep(0.5)
        yield run
    finally:
        if process.poll() is None:
            # Ctrl-C first, so the launcher removes its servers' folders; then no more waiting.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def test_the_dashboard_serves_the_sample_from_the_local_servers(launched: Launched):
    backend = launched.backend_env()
    assert backend["DATA_BACKEND"] == "aws"
    for endpoint in (backend["AWS_ENDPOINT_URL_S3"], backend["AWS_ENDPOINT_URL_DYNAMODB"]):
        assert urlsplit(endpoint).hostname == LOOPBACK

    ready = requests.get(f"{launched.url}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert {"cache_table", "state_store", "lake"} <= set(ready.json()["checks"])

    page = requests.get(f"{launched.url}/screen-time", timeout=10)
    assert page.status_code == 200
    assert "_dash-config" in page.text

    # The fleet tiles the dashboard shows equal those computed from S3 and DynamoDB directly.
    today = dt.datetime.now(dt.UTC).date()
    answer = requests.post(
        f"{launched.url}/_dash-update-component",
        json=poll_body(FLEET_TILES, version=None, tab="run-local", today=today),
        timeout=30,
    )
    assert answer.status_code == 200, answer.text[:500]
    reply = PanelReply(FLEET_TILES, answer.json())
    assert reply.status_text == ""

    settings = DataSettings.from_env(backend)
    session = boto3.Session(
        aws_access_key_id=backend["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=backend["AWS_SECRET_ACCESS_KEY"],
        region_name=settings.aws_region,
    )
    stores = aws.build_aws_stores(
        settings,
        s3=aws.s3_client(settings, session),
        dynamodb=aws.dynamodb_client(settings, session),
    )
    view = parse_view_state({}, today)
    service = DataService(stores, settings)
    query = FleetDailyQuery(view.start, view.end)
    assert reply.version == service.version(query) != "0"  # the sample's rollup, not nothing
    tiles = figures.fleet_tiles(service.fetch(query).data)
    assert any(tile["metric"] == "customer_days" and tile["value"] != "0" for tile in tiles)
    for tile in tiles:
        assert tile["value"] in reply.content_text()
    stores.lake.close()  # type: ignore[attr-defined]


def test_ctrl_c_stops_the_dashboard_and_both_servers(launched: Launched):
    backend = launched.backend_env()
    endpoints = [backend["AWS_ENDPOINT_URL_S3"], backend["AWS_ENDPOINT_URL_DYNAMODB"]]
    assert all(_accepts_connections(endpoint) for endpoint in endpoints)

    os.killpg(launched.process.pid, signal.SIGINT)
    code = launched.process.wait(STOP_TIMEOUT_SECONDS)
    assert code == 130, launched.log_tail()
    assert not _answers(launched.url)
    for endpoint in endpoints:
        assert not _accepts_connections(endpoint), f"{endpoint} still listening"
    assert "stopping DynamoDB Local and SeaweedFS" in launched.log_tail()
