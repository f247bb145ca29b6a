"""Operators as browser tabs on keep-alive connections, and the ramp that grows their number.

An operator does what a browser tab does. It loads the page (the HTML, ``/_dash-layout``,
``/_dash-dependencies``, the page-content callback, then every panel's first callback), and
then, every refresh period, posts each panel's callback with the exact JSON the Dash renderer
sends (``devtools.operators``), holding the data version its panels show, so an unchanged
poll answers 204. Every operator keeps its own keep-alive connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from bench.http_client import Answer, Connection
from devtools.operators import UPDATE_PATH, PageModel, PageSpec, Panel, page_content, render_body

# Chromium opens at most six HTTP/1.1 connections per host.
BROWSER_CONNECTIONS = 6


async def learn_page(port: int, spec: PageSpec) -> PageModel:
    connection = Connection(port)
    try:
        deps = await connection.send(connection.get("/_dash-dependencies"))
        dependencies = json.loads(deps.body)
        render = render_body(spec, dependencies)
        answer = await connection.send(connection.post_json(UPDATE_PATH, render))
        return PageModel(spec, dependencies, page_content(answer.status, answer.body), render)
    finally:
        connection.close()


# ---- recording -------------------------------------------------------------------------------


@dataclass
class Recorder:
    """Requests seen: (sent at, seconds, status, bytes, kind); errors counted by kind."""

    samples: list[tuple[float, float, int, int, str]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    last_error: str = ""

    def add(
        self, sent: float, seconds: float, answer: Answer | None, kind: str, problem: str = ""
    ) -> None:
        if answer is None:
            self.samples.append((sent, seconds, 0, 0, kind))
            self.errors[kind] += 1
            self.last_error = problem
            return
        self.samples.append((sent, seconds, answer.status, answer.size, kind))
        if answer.status >= 400:
            self.errors[kind] += 1
            self.last_error = f"HTTP {answer.status}: {answer.body[:200]!r}"

    def window(self, start: float, end: float, kind: str) -> list[tuple]:
        return [s for s in self.samples if start <= s[0] < end and s[4] == kind]


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def timed(connection: Connection, raw: bytes, recorder: Recorder, kind: str) -> Answer:
    sent = time.perf_counter()
    try:
        answer = await connection.send(raw)
    except (OSError, TimeoutError, ValueError) as exc:
        recorder.add(sent, time.perf_counter() - sent, None, kind, f"{type(exc).__name__}: {exc}")
        raise
    recorder.add(sent, time.perf_counter() - sent, answer, kind)
    return answer


# ---- operators -------------------------------------------------------------------------------


class Operator:
    """One browser tab: loads its page, then polls every panel once per period.

    Like a browser, a tab has up to six keep-alive connections to the host and sends a tick's
    panel polls in parallel over them.
    """

    def __init__(self, port: int, model: PageModel, recorder: Recorder, period: float) -> None:
        self.model = model
        self.recorder = recorder
        self.period = period
        self.client_id = uuid.uuid4().hex
        self.panels = model.new_panels()
        self.connections = [
            Connection(port) for _ in range(min(BROWSER_CONNECTIONS, len(self.panels)))
        ]
        self.loaded = asyncio.Event()
        self.stop = asyncio.Event()
        self.late_ticks = 0

    async def load(self) -> None:
        c, rec = self.connections[0], self.recorder
        await timed(c, c.get(self.model.spec.url_path), rec, "load")
        await timed(c, c.get("/_dash-layout"), rec, "load")
        await timed(c, c.get("/_dash-dependencies"), rec, "load")
        await timed(c, c.post_json(UPDATE_PATH, self.model.render), rec, "load")
        await self._poll_all(0, "load")

    async def _poll_all(self, tick: int, kind: str) -> None:
        lanes = [self.panels[n :: len(self.connections)] for n in range(len(self.connections))]
        await asyncio.gather(
            *(
                self._poll_lane(connection, lane, tick, kind)
                for connection, lane in zip(self.connections, lanes, strict=True)
            )
        )

    async def _poll_lane(
        self, connection: Connection, panels: list[Panel], tick: int, kind: str
    ) -> None:
        for panel in panels:
            body = panel.body(tick, self.client_id, self.model.state, self.model.trigger_for(panel))
            answer = await timed(
                connection, connection.post_json(UPDATE_PATH, body), self.recorder, kind
            )
            panel.remember(answer.status, answer.body)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await self.load()
            self.loaded.set()
            next_tick = loop.time() + random.uniform(0, self.period)
            while not self.stop.is_set():
                delay = next_tick - loop.time()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stop.wait(), delay)
                    if self.stop.is_set():
                        break
                # The interval's value: the renderer sends the tick time in milliseconds.
                await self._poll_all(int(time.time() * 1000), "poll")
                next_tick += self.period
                if next_tick < loop.time():
                    # The renderer's gate drops ticks while a panel is busy: so do we.
                    self.late_ticks += 1
                    next_tick = loop.time() + self.period
        except (OSError, TimeoutError, ValueError):
            pass  # recorded as an error already; this tab has failed
        finally:
            self.loaded.set()
            for connection in self.connections:
                connection.close()


@dataclass
class Level:
    operators: int
    offered_rps: float
    achieved_rps: float
    p50_ms: float
    p95_ms: float
    errors: int
    dropped_ticks: int  # refreshes a tab skipped because it was a whole period behind
    changed: int  # polls answered 200 (new content) in the window
    polls: int = 0  # polls sent in the window

    @property
    def changed_share(self) -> float:
        """The share of the window's polls that brought new content (200, not 204)."""
        return self.changed / self.polls if self.polls else 0.0

    def passes(self, budget_ms: float) -> bool:
        return self.errors == 0 and self.p95_ms <= budget_ms and self.dropped_ticks == 0


@dataclass
class Ramp:
    page: PageSpec
    period: float
    panels: int
    levels: list[Level]
    load_p95_ms: float

    def best(self, budget_ms: float) -> Level | None:
        passed = [level for level in self.levels if level.passes(budget_ms)]
        return max(passed, key=lambda level: level.operators) if passed else None

    def operators_at(self, refresh_s: float, budget_ms: float) -> int:
        """Operators refreshing every ``refresh_s`` that the best passing level stands for."""
        best = self.best(budget_ms)
        return int(best.operators * refresh_s / self.period) if best else 0


class OperatorPool:
    """Running operators of one page; grows and shrinks between measurement windows."""

    def __init__(self, port: int, model: PageModel, period: float) -> None:
        self.port, self.model, self.period = port, model, period
        self.recorder = Recorder()
        self.running: list[tuple[Operator, asyncio.Task]] = []

    async def resize(self, count: int, load_timeout_s: float = 30.0) -> None:
        while len(self.running) > count:
            operator, task = self.running.pop()
            operator.stop.set()
            await task
        added = []
        while len(self.running) < count:
            operator = Operator(self.port, self.model, self.recorder, self.period)
            self.running.append((operator, asyncio.create_task(operator.run())))
            added.append(operator)
        # New tabs load their page before a window opens: arrivals are not steady polling.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(o.loaded.wait() for o in added)), load_timeout_s
            )

    async def measure(self, window_s: float) -> Level:
        panels = len(self.model.panels)
        await asyncio.sleep(self.period + 0.2)  # every tab back on its own period
        errors_before = sum(self.recorder.errors.values())
        dropped_before = sum(operator.late_ticks for operator, _ in self.running)
        opened = time.perf_counter()
        await asyncio.sleep(window_s)
        closed = time.perf_counter()
        dropped = sum(operator.late_ticks for operator, _ in self.running) - dropped_before
        polls = self.recorder.window(opened, closed, "poll")
        latencies = [s[1] for s in polls if s[2] in (200, 204)]
        return Level(
            operators=len(self.running),
            offered_rps=len(self.running) * panels / self.period,
            achieved_rps=len(polls) / (closed - opened),
            p50_ms=percentile(latencies, 0.50) * 1000,
            p95_ms=percentile(latencies, 0.95) * 1000,
            errors=sum(self.recorder.errors.values()) - errors_before,
            dropped_ticks=dropped,
            changed=sum(1 for s in polls if s[2] == 200),
            polls=len(polls),
        )

    async def close(self) -> None:
        await self.resize(0)


async def ramp_operators(
    port: int,
    spec: PageSpec,
    *,
    period: float,
    start: int,
    factor: float,
    window_s: float,
    max_levels: int,
    budget_ms: float,
) -> Ramp:
    """Grow the operator count by ``factor`` until a level misses ``budget_ms`` (p95), errs or
    falls behind; if the first level already fails, step down until one passes."""
    model = await learn_page(port, spec)
    pool = OperatorPool(port, model, period)
    levels: list[Level] = []
    count = start
    try:
        for _ in range(max_levels):
            await pool.resize(count)
            level = await pool.measure(window_s)
            levels.append(level)
            passed = level.passes(budget_ms)
            print(
                f"   {spec.label}: {level.operators} tabs at {period:g} s, "
                f"{level.achieved_rps:.0f}/{level.offered_rps:.0f} req/s, "
                f"p50 {level.p50_ms:.1f} ms, p95 {level.p95_ms:.1f} ms, "
                f"changed {level.changed_share:.0%} of {level.polls} polls, errors {level.errors}, "
                f"dropped ticks {level.dropped_ticks} -> {'ok' if passed else 'over'}",
                file=sys.stderr,
                flush=True,
            )
            if passed:
                if any(not lv.passes(budget_ms) for lv in levels):
                    break  # stepped down to a passing level: done
                count = max(count + 1, int(count * factor))
            else:
                if any(lv.passes(budget_ms) for lv in levels) or count == 1:
                    break
                count = max(1, int(count / factor / factor))
    finally:
        await pool.close()
    samples = pool.recorder.samples
    loads = [s[1] for s in samples if s[4] == "load" and s[2] in (200, 204)]
    return Ramp(
        page=spec,
        period=period,
        panels=len(model.panels),
        levels=levels,
        load_p95_ms=percentile(loads, 0.95) * 1000,
    )
