"""The fault proxy itself: passes bytes untouched, and each fault does what it says."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from devtools.servers import LOOPBACK
from tests.plugins.faults import FaultProxy, wait_until


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer((LOOPBACK, 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(5)


def _round_trip(port: int, payload: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        sock.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def test_bytes_pass_through_untouched(fault_proxy, echo_port):
    proxy = fault_proxy(echo_port).start()
    payload = bytes(range(256)) * 1000
    assert _round_trip(proxy.port, payload) == payload
    assert proxy.connections == 1


def test_latency_outlasts_a_read_timeout_below_it(fault_proxy, echo_port):
    proxy = fault_proxy(echo_port).start()
    proxy.set_latency(1.5)
    with pytest.raises(TimeoutError):
        _round_trip(proxy.port, b"ping", timeout=0.3)
    proxy.heal()
    assert _round_trip(proxy.port, b"ping") == b"ping"


def test_refuse_resets_new_and_open_connections(fault_proxy, echo_port):
    proxy = fault_proxy(echo_port).start()
    open_connection = socket.create_connection((LOOPBACK, proxy.port), timeout=5)
    open_connection.sendall(b"hello")
    assert open_connection.recv(5) == b"hello"

    proxy.set_mode("refuse")
    with pytest.raises(OSError):
        open_connection.sendall(b"more")
        if not open_connection.recv(5):
            raise ConnectionResetError("closed")
    open_connection.close()
    with pytest.raises(OSError):
        _round_trip(proxy.port, b"x")
    assert proxy.refused >= 1
    proxy.heal()
    assert _round_trip(proxy.port, b"back") == b"back"


def test_blackhole_accepts_and_never_answers(fault_proxy, echo_port):
    proxy = fault_proxy(echo_port).start()
    proxy.set_mode("blackhole")
    with pytest.raises(TimeoutError):
        _round_trip(proxy.port, b"anyone?", timeout=0.5)


def test_an_unreachable_target_looks_like_a_stopped_server(fault_proxy):
    with socket.create_server((LOOPBACK, 0)) as placeholder:
        dead_port = placeholder.getsockname()[1]
    proxy = fault_proxy(dead_port).start()
    with pytest.raises(OSError):
        _round_trip(proxy.port, b"x")


def test_the_watchdog_stops_a_forgotten_proxy(echo_port):
    proxy = FaultProxy(echo_port, max_lifetime_seconds=0.5).start()
    assert _round_trip(proxy.port, b"ok") == b"ok"

    def closed() -> bool:
        try:
            socket.create_connection((LOOPBACK, proxy.port), timeout=0.5).close()
        except OSError:
            return True
        return False

    assert wait_until(closed, timeout=10)
