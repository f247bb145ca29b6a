"""Calls to the identity provider that cannot hold a thread for long.

Three guards, shared by the OIDC client and the ALB key fetch:

- **A whole-call deadline.** ``requests`` (and urllib3 under it) time each socket read, so
  a server that drips one byte per second never trips a 5 s read timeout. Here every
  socket opened for a call is registered with a timer that shuts it down when the
  deadline passes, whatever stage the call is in (connect, TLS, headers, body); the call
  then raises ``DeadlineExceeded``. ``call_budget`` lets one sign-in share one deadline
  across its several calls.
- **A per-worker bound on waiting.** ``ProviderGate`` is a semaphore: a thread must hold a
  slot to call the provider or to wait for another thread's call. A thread that cannot
  get one within ``SLOT_WAIT_SECONDS`` gets ``ProviderBusy`` at once, so a hung provider
  ties up at most that many gunicorn threads and the others keep serving.
- **Single-flight caches.** ``SingleFlightCache`` keeps a value (discovery, JWKS) for a
  TTL; one thread refreshes it while the others use the cached copy, or, when there is
  none, wait for that one refresh (at most their deadline) instead of each asking.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, Generic, TypeVar

import requests
from authlib.integrations.requests_client import OAuth2Session
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

# How long a thread may wait for a free slot before it is told the provider is busy: long
# enough to ride out a slot being handed over, short enough to be "at once" for a person.
SLOT_WAIT_SECONDS = 0.25
Value = TypeVar("Value")

# The monotonic time by which the current sign-in's provider calls must be done.
_budget_ends: ContextVar[float | None] = ContextVar("provider_budget_ends", default=None)
_active_watch = threading.local()


class ProviderBusy(Exception):
    """Every provider slot of this worker is taken: answer 503 now rather than queue."""


class DeadlineExceeded(requests.Timeout):
    """A provider call did not finish within its whole-call deadline."""


@contextlib.contextmanager
def call_budget(seconds: float) -> Iterator[None]:
    """Provider calls inside share one deadline, ``seconds`` from now (or an outer one's)."""
    ends = time.monotonic() + seconds
    outer = _budget_ends.get()
    token = _budget_ends.set(ends if outer is None else min(outer, ends))
    try:
        yield
    finally:
        _budget_ends.reset(token)


def deadline_after(seconds: float) -> float:
    """The monotonic deadline of a call starting now: ``seconds`` or the budget, if sooner."""
    ends = time.monotonic() + seconds
    outer = _budget_ends.get()
    return ends if outer is None else min(outer, ends)


class ProviderGate:
    """At most ``size`` threads of this worker calling or waiting on the provider."""

    def __init__(self, size: int, slot_wait_seconds: float = SLOT_WAIT_SECONDS) -> None:
        self.size = size
        self.slot_wait_seconds = slot_wait_seconds
        self.in_use = 0  # slots held now, for logs and tests
        self._slots = threading.BoundedSemaphore(size)
        self._count_lock = threading.Lock()

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        if not self._slots.acquire(timeout=self.slot_wait_seconds):
            raise ProviderBusy(f"all {self.size} identity provider slots are in use")
        with self._count_lock:
            self.in_use += 1
        try:
            yield
        finally:
            with self._count_lock:
                self.in_use -= 1
            self._slots.release()


class _SocketWatch:
    """Shuts down every socket of one call when its deadline passes (wakes blocked reads)."""

    def __init__(self, ends: float) -> None:
        self.ends = ends
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(ends - time.monotonic(), 0.0), self._expire)
        self._timer.daemon = True

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            doomed = list(self._sockets)
        for sock in doomed:
            _shut(sock)

    def __enter__(self) -> _SocketWatch:
        _active_watch.current = self
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()
        _active_watch.current = None


def _shut(sock: socket.socket) -> None:
    # shutdown(), not close(): it wakes a thread blocked in recv() on this socket.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _watched(sock: socket.socket) -> socket.socket:
    watch = getattr(_active_watch, "current", None)
    if watch is not None:
        watch.add(sock)
    return sock


class _WatchedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _watched(super()._new_conn())


class _WatchedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        # The plain socket, before the TLS handshake: a dripped handshake is cut too.
        return _watched(super()._new_conn())


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


def mount_watched_adapters(session: requests.Session) -> None:
    adapter = _WatchedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)


def bounded_send(
    send: Callable[..., requests.Response], ends: float, url: str, **kwargs: Any
) -> requests.Response:
    """``send(url, **kwargs)`` with its whole answer read by ``ends`` (monotonic), or
    ``DeadlineExceeded``. ``send`` must go through a session with watched adapters."""
    remaining = ends - time.monotonic()
    if remaining <= 0:
        raise DeadlineExceeded(f"no time left to call {url}")
    # Per-read timeouts still apply; the watch below bounds the sum of them.
    kwargs["timeout"] = (remaining, remaining)
    kwargs["stream"] = True
    with _SocketWatch(ends) as watch:
        try:
            response = send(url, **kwargs)
            response.content  # noqa: B018  (reads the whole body inside the watch)
        except requests.RequestException:
            if watch.expired:
                raise DeadlineExceeded(f"{url}: no full answer by the deadline") from None
            raise
    if watch.expired:
        # A cut connection without a Content-Length can look like a short, complete body.
        raise DeadlineExceeded(f"{url}: no full answer by the deadline")
    return response


def get_within(url: str, seconds: float, gate: ProviderGate) -> requests.Response:
    """GET ``url`` with a whole-call deadline of ``seconds``, holding a slot of ``gate``."""
    with gate.slot(), requests.Session() as session:
        mount_watched_adapters(session)
        return bounded_send(session.get, deadline_after(seconds), url)


class DeadlineOAuth2Session(OAuth2Session):
    """Authlib's requests session, with every request bounded as ``get_within`` is.

    Authlib builds one per call from ``client_kwargs``, which carry ``provider_gate`` and
    ``call_seconds``.
    """

    def __init__(
        self, *args: Any, provider_gate: ProviderGate, call_seconds: float, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.provider_gate = provider_gate
        self.call_seconds = call_seconds
        mount_watched_adapters(self)

    def request(  # type: ignore[override]
        self, method: str, url: str, withhold_token: bool = False, auth: Any = None, **kwargs: Any
    ) -> requests.Response:
        parent = super().request
        with self.provider_gate.slot():
            return bounded_send(
                lambda target, **options: parent(
                    method, target, withhold_token=withhold_token, auth=auth, **options
                ),
                deadline_after(self.call_seconds),
                url,
                **kwargs,
            )


class SingleFlightCache(Generic[Value]):
    """A value kept ``ttl_seconds``, refreshed by one thread at a time.

    While a refresh runs, other threads get the cached copy if there is one; otherwise they
    wait for that refresh, holding a slot of ``gate``, until their deadline. A failed
    refresh drops the cached copy (the provider is not to be sent users while down), and
    the threads that waited for it get the refresh's error.
    """

    def __init__(
        self,
        fetch: Callable[[], Value],
        *,
        ttl_seconds: float,
        gate: ProviderGate,
        wait_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fetch = fetch
        self.ttl_seconds = ttl_seconds
        self.gate = gate
        self.wait_seconds = wait_seconds
        self.clock = clock
        self.fetches = 0  # refreshes started, for tests and logs
        self._value: Value | None = None
        self._expires = 0.0
        self._error: BaseException | None = None
        self._flight: threading.Event | None = None
        self._lock = threading.Lock()

    def get(self, *, force: bool = False) -> Value:
        """The cached value, or a fresh one; ``force`` refreshes even a fresh one."""
        with self._lock:
            value = self._value
            if value is not None and not force and self.clock() < self._expires:
                return value
            flight = self._flight
            if flight is None:
                flight = self._flight = threading.Event()
                self.fetches += 1
                leader = True
            else:
                leader = False
        if leader:
            return self._refresh(flight)
        if value is not None and not force:
            return value
        return self._await(flight)

    def clear(self) -> None:
        with self._lock:
            self._value = None
            self._expires = 0.0

    def _refresh(self, flight: threading.Event) -> Value:
        try:
            value = self.fetch()
        except BaseException as exc:
            with self._lock:
                self._value, self._expires, self._error = None, 0.0, exc
                self._flight = None
            flight.set()
            raise
        with self._lock:
            self._value, self._expires, self._error = value, self.clock() + self.ttl_seconds, None
            self._flight = None
        flight.set()
        return value

    def _await(self, flight: threading.Event) -> Value:
        with self.gate.slot():
            wait = deadline_after(self.wait_seconds) - time.monotonic()
            if not flight.wait(max(wait, 0.0)):
                raise DeadlineExceeded("another thread's refresh did not finish by the deadline")
        with self._lock:
            value, error = self._value, self._error
        if value is not None:
            return value
        raise error if error is not None else DeadlineExceeded("the refresh gave no value")
