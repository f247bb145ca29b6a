"""Closed-loop throughput: each connection sends its next request as soon as the last is
answered, with the workers' CPU time per answered request beside it."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import psutil

from bench.http_client import Answer, Connection
from bench.ramp import Recorder, percentile, timed
from bench.serving import Served
from devtools.operators import UPDATE_PATH, PageModel


@dataclass
class Throughput:
    label: str
    rps: float
    p50_ms: float
    statuses: Counter[int]
    mean_answer_bytes: float
    request_bytes: int
    server_cpu_ms: float  # worker CPU time per answered request


def _cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


async def closed_loop(
    served: Served,
    label: str,
    make_request: Any,
    *,
    connections: int,
    seconds: float,
) -> Throughput:
    """Each connection sends its next request when the last is answered, for ``seconds``.

    Also the workers' CPU time per answered request: unlike throughput it hardly depends on
    what else the machine runs at the time.
    """
    recorder = Recorder()
    request_sizes: list[int] = []
    workers = served.worker_pids()
    cpu_before = _cpu_seconds(workers)
    opened = time.perf_counter()
    deadline = opened + seconds

    async def client(index: int) -> None:
        connection = Connection(served.port)
        sequence = 0
        try:
            while time.perf_counter() < deadline:
                raw = make_request(connection, index, sequence)
                if not request_sizes:
                    request_sizes.append(len(raw))
                sequence += 1
                with contextlib.suppress(OSError, TimeoutError, ValueError):
                    await timed(connection, raw, recorder, "call")
        finally:
            connection.close()

    await asyncio.gather(*(client(i) for i in range(connections)))
    elapsed = time.perf_counter() - opened
    cpu = _cpu_seconds(workers) - cpu_before
    ok = [s for s in recorder.samples if 200 <= s[2] < 300]
    if recorder.errors:
        raise RuntimeError(
            f"{label}: {sum(recorder.errors.values())} failed requests, the last: "
            f"{recorder.last_error}"
        )
    return Throughput(
        label=label,
        rps=len(ok) / elapsed,
        p50_ms=percentile([s[1] for s in ok], 0.5) * 1000,
        statuses=Counter(s[2] for s in recorder.samples),
        mean_answer_bytes=statistics.mean(s[3] for s in ok) if ok else float("nan"),
        request_bytes=request_sizes[0] if request_sizes else 0,
        server_cpu_ms=cpu / len(ok) * 1000 if ok else float("nan"),
    )


def poll_requests(model: PageModel, panel_name: str, *, held: Any) -> Any:
    """Requests for one panel's poll from ever new tabs (so no per-tab floor applies)."""
    panel = next(p for p in model.new_panels() if p.name == panel_name)
    panel.held = held
    trigger = model.trigger_for(panel)

    def make(connection: Connection, index: int, sequence: int) -> bytes:
        body = panel.body(1 + sequence, f"tp-{index}-{sequence}", model.state, trigger)
        return connection.post_json(UPDATE_PATH, body)

    return make


async def first_answer(port: int, model: PageModel, panel_name: str) -> Answer:
    """A fresh tab's first poll of a panel (version None): what the panel then holds."""
    panel = next(p for p in model.new_panels() if p.name == panel_name)
    connection = Connection(port)
    try:
        body = panel.body(0, uuid.uuid4().hex, model.state, model.trigger_for(panel))
        answer = await connection.send(connection.post_json(UPDATE_PATH, body))
        panel.remember(answer.status, answer.body)
        if answer.status != 200:
            raise RuntimeError(f"{panel_name} first poll answered {answer.status}")
        return answer
    finally:
        connection.close()


def held_version(model: PageModel, panel_name: str, answer: Answer) -> Any:
    panel = next(p for p in model.new_panels() if p.name == panel_name)
    panel.remember(answer.status, answer.body)
    return panel.held
