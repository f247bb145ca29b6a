"""A small TCP proxy for fault tests: sits in front of one loopback server and, on demand,
adds latency, refuses connections or swallows them.

Point a client at ``proxy.endpoint`` instead of the server (``AWS_ENDPOINT_URL_S3`` /
``AWS_ENDPOINT_URL_DYNAMODB``); the bytes pass through untouched, so signed requests stay
valid. Modes, switched while traffic flows:

- ``pass``: forward both ways; ``latency_seconds`` delays each chunk the server sends back.
- ``refuse``: close new connections at once with a reset, and cut the open ones: what a
  client sees when the server has gone away.
- ``blackhole``: accept and read, never answer: a server that hangs.

Bounded: at most ``max_connections`` at once (more are refused), daemon threads, and a
watchdog that stops the proxy after ``max_lifetime_seconds`` whatever the test does.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Literal

import pytest

from devtools.servers import LOOPBACK

Mode = Literal["pass", "refuse", "blackhole"]
CHUNK_BYTES = 64 * 1024


def _reset(sock: socket.socket) -> None:
    """Close with RST rather than FIN, as a dead peer's kernel would answer."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    _close(sock, socket.SHUT_RD)


def _close(sock: socket.socket, how: int = socket.SHUT_RDWR) -> None:
    # shutdown() first: close() alone does not wake a thread blocked in recv() on it.
    with contextlib.suppress(OSError):
        sock.shutdown(how)
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    def __init__(
        self,
        target_port: int,
        target_host: str = LOOPBACK,
        *,
        max_connections: int = 128,
        max_lifetime_seconds: float = 900.0,
    ) -> None:
        self.target = (target_host, target_port)
        self.max_connections = max_connections
        self.max_lifetime_seconds = max_lifetime_seconds
        self.mode: Mode = "pass"
        self.latency_seconds = 0.0
        self.connections = 0  # accepted and forwarded, in total
        self.refused = 0
        self._listener = socket.create_server((LOOPBACK, 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    # ---- control ---------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._spawn(self._accept_loop, "accept")
        self._spawn(self._watchdog, "watchdog")
        return self

    def set_mode(self, mode: Mode, latency_seconds: float | None = None) -> None:
        if latency_seconds is not None:
            self.latency_seconds = latency_seconds
        self.mode = mode
        if mode != "pass":
            self.cut_all()

    def set_latency(self, seconds: float) -> None:
        self.latency_seconds = seconds

    def heal(self) -> None:
        self.mode = "pass"
        self.latency_seconds = 0.0

    def cut_all(self) -> None:
        """Reset every open connection (pooled keep-alive ones included)."""
        with self._lock:
            doomed, self._open = self._open, set()
        for sock in doomed:
            _reset(sock)

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut_all()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(2)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- the proxy -------------------------------------------------------------------------

    def _spawn(self, target, name: str, *args: object) -> None:
        thread = threading.Thread(
            target=target, args=args, name=f"fault-proxy-{self.port}-{name}", daemon=True
        )
        thread.start()
        # Finished pumps are dropped so a long run does not keep every thread object.
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def _watchdog(self) -> None:
        if not self._stopped.wait(self.max_lifetime_seconds):
            self.stop()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                crowded = len(self._open) >= self.max_connections * 2
            if self.mode == "refuse" or crowded:
                self.refused += 1
                _reset(client)
                continue
            if self.mode == "blackhole":
                self._track(client)
                self._spawn(self._swallow, "blackhole", client)
                continue
            self._spawn(self._connect, "connect", client)

    def _track(self, *socks: socket.socket) -> None:
        with self._lock:
            self._open.update(socks)

    def _untrack(self, *socks: socket.socket) -> None:
        with self._lock:
            self._open.difference_update(socks)
        for sock in socks:
            _close(sock)

    def _swallow(self, client: socket.socket) -> None:
        client.settimeout(0.5)
        try:
            while not self._stopped.is_set() and self.mode == "blackhole":
                try:
                    if not client.recv(CHUNK_BYTES):
                        break
                except TimeoutError:
                    continue
        except OSError:
            pass
        finally:
            self._untrack(client)

    def _connect(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            # The server is down: the client sees what it would see without the proxy.
            self.refused += 1
            _reset(client)
            return
        upstream.settimeout(None)
        self.connections += 1
        self._track(client, upstream)
        self._spawn(self._pump, "up", client, upstream, False)
        self._pump(upstream, client, True)

    def _pump(self, source: socket.socket, sink: socket.socket, delayed: bool) -> None:
        try:
            while not self._stopped.is_set():
                data = source.recv(CHUNK_BYTES)
                if not data:
                    break
                delay = self.latency_seconds if delayed else 0.0
                # Interruptible: stop() must not wait out a long delay.
                if delay > 0 and self._stopped.wait(delay):
                    break
                if self.mode != "pass":
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._untrack(source, sink)


@pytest.fixture
def fault_proxy() -> Iterator[type[FaultProxy]]:
    """A factory: ``fault_proxy(port)`` starts a proxy that the fixture stops afterwards."""
    started: list[FaultProxy] = []

    class _Tracked(FaultProxy):
        def start(self) -> FaultProxy:
            started.append(self)
            return super().start()

    yield _Tracked
    for proxy in started:
        proxy.stop()


def wait_until(condition, timeout: float, interval: float = 0.1) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; returns the last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())
