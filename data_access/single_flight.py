"""One producer per key: when many callers miss the same cache key at once (every operator
on a view when its data version moves), one reads and builds, and the others take its answer.

In a process, callers of a key in flight wait for the leader's result (or its exception).
Across processes, when given a ``claim`` (an atomic claim in a shared store: Redis
``SET NX PX``), the leader of each process claims the key first; if another process holds
the claim, it watches the shared cache for that answer for up to ``wait_seconds``, then
produces itself. A claim that fails to answer (``None``: no shared store, or it is down)
means each process decides alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

# A lake read and a figure build take well under this; a claimant that died holding a claim
# costs the other processes this long once.
WAIT_SECONDS = 3.0
POLL_SECONDS = 0.02

Claim = Callable[[str, float], bool | None]
Release = Callable[[str], None]


@dataclass
class _Flight(Generic[T]):
    future: Future[tuple[T, bool]] = field(default_factory=Future)
    followers: int = 0


class SingleFlight(Generic[T]):
    def __init__(
        self,
        claim: Claim | None = None,
        release: Release | None = None,
        *,
        wait_seconds: float = WAIT_SECONDS,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self._claim = claim
        self._release = release
        self._wait = wait_seconds
        self._poll = poll_seconds
        self._guard = threading.Lock()
        self._flights: dict[str, _Flight[T]] = {}
        # Callers that took another process's answer from the shared cache.
        self.shared_across_processes = 0

    def followers(self, key: str) -> int:
        """Callers now waiting on the key's leader in this process."""
        with self._guard:
            flight = self._flights.get(key)
            return flight.followers if flight else 0

    def run(
        self, key: str, lookup: Callable[[], T | None], produce: Callable[[], T]
    ) -> tuple[T, bool]:
        """``(value, shared)``: ``produce()``'s value, once per key in flight; ``shared`` when
        this caller did not produce it (another thread or process did)."""
        with self._guard:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
            else:
                flight.followers += 1
        if not leader:
            value, _ = flight.future.result()
            return value, True
        try:
            answer = self._lead(key, lookup, produce)
        except BaseException as exc:
            flight.future.set_exception(exc)
            raise
        else:
            flight.future.set_result(answer)
            return answer
        finally:
            with self._guard:
                del self._flights[key]

    def _lead(
        self, key: str, lookup: Callable[[], T | None], produce: Callable[[], T]
    ) -> tuple[T, bool]:
        found = lookup()  # a flight that ended since the caller looked
        if found is not None:
            return found, True
        name = f"flight:{key}"
        claimed = None if self._claim is None else self._claim(name, self._wait)
        if claimed is not False:
            try:
                return produce(), False
            finally:
                if claimed and self._release is not None:
                    self._release(name)
        # Another process is producing it: its answer lands in the shared cache.
        deadline = time.monotonic() + self._wait
        while time.monotonic() < deadline:
            time.sleep(self._poll)
            found = lookup()
            if found is not None:
                with self._guard:
                    self.shared_across_processes += 1
                return found, True
        return produce(), False
