"""Memory: RSS per gunicorn worker across a bounded soak of steady polling.

Operators of the overview and of the screen-time customer view poll at a steady level: a
quarter of each view's capacity the operators section measured (when it ran first), so about
half the instance together. Every few seconds the data
versions move, as a rollup run or an upload moves them, so panels fetch and rebuild and every
bounded cache (memo, figure cache, poll floor, last-good answers) fills and evicts during the
soak rather than sitting still. RSS is sampled per worker from the end of a warm-up (the
start figure) to the end of the soak; growth beyond a few percent would be a leak.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.ramp import OperatorPool, learn_page, percentile
from bench.report import Report
from bench.serving import (
    Served,
    ServingLake,
    dashboard_env,
    pages,
    serve,
    serving_lake,
    touch_customer,
)
from data_access import layout
from data_access.factory import build_stores
from data_access.settings import DataSettings
from data_access.stores import Stores

PERIOD_S = 0.5


@dataclass(frozen=True)
class SoakSettings:
    warmup_s: float
    soak_s: float
    sample_every_s: float = 5.0
    bump_every_s: float = 5.0

    @classmethod
    def for_mode(cls, full: bool) -> SoakSettings:
        return cls(warmup_s=15.0, soak_s=300.0) if full else cls(warmup_s=5.0, soak_s=60.0)


def _level_from_report(report: Report, label: str, default: int) -> int:
    """A quarter of the tabs the operators section found for ``label``, if it ran."""
    for figure in report.figures:
        name = figure.name
        if name.startswith("operators at 5 s refresh") and name.endswith(f": {label}"):
            if not figure.value:
                continue
            return max(1, int(figure.value * PERIOD_S / 5.0 / 4))
    return default


def memory(report: Report, folder: Path, *, full: bool) -> None:
    settings = SoakSettings.for_mode(full)
    lake = serving_lake(folder.parent, full=full)
    levels = {
        "overview": _level_from_report(report, "overview", 30),
        "customer": _level_from_report(report, "screen-time customer view", 12),
    }
    state = DataSettings(lake_root=lake.lake_root, state_db=lake.state_db)
    with serve("ours", "wsgi:server", folder, dashboard_env(lake, PERIOD_S)) as ours:
        samples, polls = asyncio.run(_soak(ours, lake, levels, settings, state))
    start, middle, end = samples[0][1], samples[len(samples) // 2][1], samples[-1][1]
    filling, steady = _growth(start, middle), _growth(middle, end)
    half_s = samples[-1][0] - samples[len(samples) // 2][0]
    mib = 2**20
    report.add(
        "memory",
        "RSS per worker at soak start",
        statistics.mean(start.values()) / mib,
        unit="MiB",
        note=f"after {settings.warmup_s:.0f} s of polling; workers "
        + ", ".join(f"{v / mib:.0f}" for v in start.values())
        + " MiB",
    )
    report.add(
        "memory",
        "RSS per worker at soak end",
        statistics.mean(end.values()) / mib,
        unit="MiB",
        note="workers " + ", ".join(f"{v / mib:.0f}" for v in end.values()) + " MiB",
    )
    report.add(
        "memory",
        f"RSS growth, first half of the soak ({samples[len(samples) // 2][0]:.0f} s)",
        max(filling.values()) if filling else None,
        unit="%",
        note="worst worker; bounded caches (memo, figures, poll floor, last good) fill up",
    )
    report.add(
        "memory",
        f"RSS growth, second half of the soak ({half_s:.0f} s)",
        max(steady.values()) if steady else None,
        unit="%",
        target="within noise (a few %)",
        note=f"worst worker; {polls['count']:,} polls at {polls['rps']:.0f}/s, p95 "
        f"{polls['p95_ms']:.0f} ms, {levels['overview']}+{levels['customer']} tabs at "
        f"{PERIOD_S:g} s, data versions moved every {settings.bump_every_s:g} s",
    )


def _growth(before: dict[int, int], after: dict[int, int]) -> dict[int, float]:
    """Per worker, % RSS growth (workers present in both samples)."""
    return {pid: (after[pid] - before[pid]) / before[pid] * 100 for pid in before if pid in after}


async def _soak(
    served: Served,
    lake: ServingLake,
    levels: dict[str, int],
    settings: SoakSettings,
    state: DataSettings,
) -> tuple[list[tuple[float, dict[int, int]]], dict[str, float]]:
    specs = pages(lake)
    pools = []
    for key, count in levels.items():
        model = await learn_page(served.port, specs[key])
        pool = OperatorPool(served.port, model, PERIOD_S)
        await pool.resize(count)
        pools.append(pool)
    stores = build_stores(state)
    samples: list[tuple[float, dict[int, int]]] = []
    try:
        await _run_for(settings.warmup_s, settings.bump_every_s, stores, lake.customer)
        opened = time.perf_counter()
        samples.append((0.0, served.worker_rss_bytes()))
        elapsed = 0.0
        while elapsed < settings.soak_s:
            step = min(settings.sample_every_s, settings.soak_s - elapsed)
            await _run_for(step, settings.bump_every_s, stores, lake.customer)
            elapsed = time.perf_counter() - opened
            samples.append((elapsed, served.worker_rss_bytes()))
        closed = time.perf_counter()
    finally:
        for pool in pools:
            await pool.close()
    polls = [s for pool in pools for s in pool.recorder.window(opened, closed, "poll")]
    errors = sum(sum(pool.recorder.errors.values()) for pool in pools)
    if errors:
        print(f"   memory soak: {errors} failed requests", file=sys.stderr)
    return samples, {
        "count": len(polls),
        "rps": len(polls) / (closed - opened),
        "p95_ms": percentile([s[1] for s in polls], 0.95) * 1000,
    }


async def _run_for(seconds: float, bump_every_s: float, stores: Stores, customer: str) -> None:
    """Let the operators poll for ``seconds``, moving the data versions now and then."""
    deadline = time.perf_counter() + seconds
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            return
        await asyncio.sleep(min(bump_every_s, left))
        stamp = f"{time.time():.6f}"
        for name in (layout.VERSION_BUSINESS_ROLLUP, layout.VERSION_SCREEN_TIME_ROLLUP):
            stores.state.put(name, stamp)
        touch_customer(stores.index, customer)
