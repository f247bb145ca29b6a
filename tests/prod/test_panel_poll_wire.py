"""An unchanged tick on the wire: the image's gunicorn command answers a panel poll whose
versions are current with at most 300 bytes, status line and headers included."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from auth.guard import PANEL_POLL_PATH
from data_access.alerts import AlertsQuery
from data_access.service import DataService
from devtools.servers import LOOPBACK
from tests.plugins.browser import SampleLake
from tests.prod.processes import LoopbackProcess, gunicorn_instance

UNCHANGED_TICK_MAX_BYTES = 300
PANEL = "overview-alerts"


@pytest.fixture(scope="module")
def instance(
    sample_lake: SampleLake, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LoopbackProcess]:
    env = {
        "DATA_BACKEND": "local",
        "AUTH_MODE": "dev",
        "LAKE_ROOT": str(sample_lake.settings.lake_root),
        "STATE_DB": str(sample_lake.settings.state_db),
        "WEB_CONCURRENCY": "2",
        "REFRESH_FLOOR_MS": "0",  # every poll here is answered on its versions
    }
    process = gunicorn_instance("poll-wire", tmp_path_factory.mktemp("poll-wire"), env)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def raw_poll(port: int, panels: dict[str, str | None]) -> bytes:
    """Everything the server sends back for one poll: status line, headers and body."""
    body = json.dumps({"tab": "wire-tab", "state": {}, "panels": panels}).encode()
    head = (
        f"POST {PANEL_POLL_PATH} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    received = b""
    with socket.create_connection((LOOPBACK, port), timeout=10) as connection:
        connection.sendall(head + body)
        while chunk := connection.recv(65536):
            received += chunk
    return received


def test_an_unchanged_tick_is_at_most_300_bytes_on_the_wire(instance, sample_lake: SampleLake):
    current = DataService(sample_lake.stores(), sample_lake.settings).version(AlertsQuery())

    changed = raw_poll(instance.port, {PANEL: "an older version"})
    unchanged = raw_poll(instance.port, {PANEL: current})

    assert changed.startswith(b"HTTP/1.1 200 "), changed
    status_line, _, rest = unchanged.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert status_line.startswith(b"HTTP/1.1 204 "), unchanged
    assert body == b""
    assert b"Content-Security-Policy" not in headers
    assert b"X-Content-Type-Options: nosniff" in headers
    assert len(unchanged) <= UNCHANGED_TICK_MAX_BYTES, unchanged.decode()
