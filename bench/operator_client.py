"""The load generator: simulated browser tabs at the real refresh period, in client processes.

Each tab holds one keep-alive connection to the proxy, as a browser does, and every period
sends what its page sends at a tick (``devtools.operators``):

- ``ours``: the page's one ``POST /poll``; on a 200 the changed panels' Dash callbacks, one
  after another on the same connection, keeping the versions they answer;
- ``naive``: the naive app's page, whose ``Interval`` fires every panel's callback;
- ``ceiling``: the same ``POST /poll`` body to the bare Flask app, always answered 204.

A tab starts at a random phase within the period. A tick that is still running when the
next is due makes the tab skip a tick, as the page's gate does; skipped ticks fail a level.

Tabs run in ``processes`` client processes (one asyncio loop each); the parent tells them how
many tabs to hold and when to measure, and adds up what they saw, with their own CPU time,
so a reader sees when the client was the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import random
import time
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from typing import Any

import psutil

from bench.http_client import Connection
from devtools.operators import UPDATE_PATH, PageModel, PageTraffic


@dataclass
class Workload:
    """What every tab of a ramp sends: ``kind`` and the page it is on."""

    kind: str  # "ours", "naive", "ceiling"
    port: int
    period_s: float
    traffic: PageTraffic | None = None  # ours and ceiling (its poll body)
    naive: PageModel | None = None


@dataclass
class WindowStats:
    """What the tabs of one client process saw during a measurement window."""

    latencies: list[float] = field(default_factory=list)  # every request, seconds
    requests: int = 0
    ticks: int = 0
    changed_ticks: int = 0  # ours: polls answered 200
    tick_bytes: int = 0  # requests and answers on the wire, headers included
    unchanged_tick_bytes: int = 0  # the same, of ticks that were a lone poll answered 204
    unchanged_answer_bytes: int = 0  # the 204 alone: status line and headers
    unchanged_ticks: int = 0
    errors: int = 0
    skipped_ticks: int = 0
    last_error: str = ""
    cpu_s: float = 0.0
    wall_s: float = 0.0

    def merge(self, other: WindowStats) -> None:
        self.latencies += other.latencies
        for name in (
            "requests",
            "ticks",
            "changed_ticks",
            "tick_bytes",
            "unchanged_tick_bytes",
            "unchanged_answer_bytes",
            "unchanged_ticks",
            "errors",
            "skipped_ticks",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.last_error = other.last_error or self.last_error
        self.cpu_s += other.cpu_s
        self.wall_s = max(self.wall_s, other.wall_s)


class _Tabs:
    """The tabs of one client process."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self.running: list[tuple[asyncio.Task, asyncio.Event]] = []
        self.stats: WindowStats | None = None  # set while a window is open

    def _ok(self, status: int) -> bool:
        return status in (200, 204)

    async def _send(self, connection: Connection, raw: bytes, stats: WindowStats | None) -> Any:
        sent = time.perf_counter()
        try:
            answer = await connection.send(raw)
        except (OSError, TimeoutError, ValueError) as exc:
            if stats is not None:
                stats.errors += 1
                stats.last_error = f"{type(exc).__name__}: {exc}"
            return None
        if stats is not None:
            stats.latencies.append(time.perf_counter() - sent)
            stats.requests += 1
            stats.tick_bytes += len(raw) + answer.size
            if not self._ok(answer.status):
                stats.errors += 1
                stats.last_error = f"HTTP {answer.status}: {answer.body[:200]!r}"
        return answer

    async def _tick(self, connection: Connection, state: Any) -> None:
        stats = self.stats
        workload = self.workload
        if stats is not None:
            stats.ticks += 1
        if workload.kind == "naive":
            model: PageModel = workload.naive  # type: ignore[assignment]
            tick = int(time.time() * 1000)
            for panel in state:
                body = panel.body(tick, "-", model.state, model.trigger_for(panel))
                await self._send(connection, connection.post_json(UPDATE_PATH, body), stats)
            return
        tab = state
        poll = tab.poll()
        raw = connection.post_json(poll.path, poll.body)
        answer = await self._send(connection, raw, stats)
        if answer is None:
            return
        if answer.status == 204:
            if stats is not None:
                stats.unchanged_ticks += 1
                stats.unchanged_tick_bytes += len(raw) + answer.size
                stats.unchanged_answer_bytes += answer.size
            return
        if workload.kind == "ceiling":
            return
        if stats is not None and answer.status == 200:
            stats.changed_ticks += 1
        for panel, request in tab.answer_poll(answer.status, answer.body):
            refreshed = await self._send(
                connection, connection.post_json(request.path, request.body or b""), stats
            )
            if refreshed is not None:
                tab.answer_refresh(panel, refreshed.status, refreshed.body)

    async def _run_tab(self, stop: asyncio.Event) -> None:
        workload = self.workload
        loop = asyncio.get_running_loop()
        connection = Connection(workload.port)
        if workload.kind == "naive":
            state: Any = workload.naive.new_panels()  # type: ignore[union-attr]
        else:
            state = workload.traffic.new_tab(uuid.uuid4().hex)  # type: ignore[union-attr]
        next_tick = loop.time() + random.uniform(0, workload.period_s)
        try:
            while not stop.is_set():
                delay = next_tick - loop.time()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    if stop.is_set():
                        break
                await self._tick(connection, state)
                next_tick += workload.period_s
                if next_tick < loop.time():
                    # The page's gate: no tick while the last one runs; this one is lost.
                    if self.stats is not None:
                        self.stats.skipped_ticks += 1
                    next_tick = loop.time() + workload.period_s
        finally:
            connection.close()

    async def resize(self, count: int) -> None:
        leaving = self.running[count:]
        del self.running[count:]
        # Each tab stops at its next turn; cancelling as well ends a tab's pending request
        # at once (stop first: a cancellation can be swallowed by ``wait_for`` in 3.11).
        for task, stop in leaving:
            stop.set()
            task.cancel()
        if leaving:
            await asyncio.wait([task for task, _ in leaving], timeout=30)
        while len(self.running) < count:
            stop = asyncio.Event()
            self.running.append((asyncio.create_task(self._run_tab(stop)), stop))

    async def measure(self, seconds: float) -> WindowStats:
        process = psutil.Process()
        stats = WindowStats()
        cpu = process.cpu_times()
        opened = time.perf_counter()
        self.stats = stats
        await asyncio.sleep(seconds)
        self.stats = None
        after = process.cpu_times()
        stats.wall_s = time.perf_counter() - opened
        stats.cpu_s = (after.user - cpu.user) + (after.system - cpu.system)
        return stats


def _child(pipe: Pipe, workload: Workload) -> None:
    async def serve() -> None:
        tabs = _Tabs(workload)
        loop = asyncio.get_running_loop()
        while True:
            command, argument = await loop.run_in_executor(None, pipe.recv)
            if command == "resize":
                await tabs.resize(argument)
                pipe.send(("ok", None))
            elif command == "measure":
                pipe.send(("ok", await tabs.measure(argument)))
            else:
                await tabs.resize(0)
                pipe.send(("ok", None))
                return

    asyncio.run(serve())


class ClientPool:
    """``processes`` client processes holding ``count`` tabs between them."""

    def __init__(self, workload: Workload, processes: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[Pipe] = []
        self.processes = []
        for _ in range(processes):
            parent, child = context.Pipe()
            process = context.Process(target=_child, args=(child, workload), daemon=True)
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)
        self.count = 0

    def _all(self, command: str, arguments: list[Any]) -> list[Any]:
        for pipe, argument in zip(self.pipes, arguments, strict=True):
            pipe.send((command, argument))
        return [pipe.recv()[1] for pipe in self.pipes]

    def resize(self, count: int) -> None:
        share, extra = divmod(count, len(self.pipes))
        self._all("resize", [share + (n < extra) for n in range(len(self.pipes))])
        self.count = count

    def measure(self, seconds: float) -> WindowStats:
        total = WindowStats()
        for stats in self._all("measure", [seconds] * len(self.pipes)):
            total.merge(stats)
        return total

    def close(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            self._all("stop", [None] * len(self.pipes))
        for process in self.processes:
            process.join(30)
            if process.is_alive():
                process.kill()
