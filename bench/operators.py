"""Operators per instance: browser tabs at the real 5-second refresh, through nginx.

The method, in one run on one machine:

- **What a tab sends.** Mission Control's pages are recorded in headless Chromium first
  (``devtools.recording``): the Overview, the Screen time page with a customer drilled into,
  and Health, each settled, then with its data moved. Each simulated tab replays what the
  page sent (``devtools.operators``): one ``POST /poll`` per tick with its own tab id and
  versions, and on a 200 the changed panels' Dash callbacks. The bare Flask ceiling
  (``bench/ceiling_app.py``) gets the same poll and answers 204; the naive Dash app
  (``bench/naive_app.py``), with and without flask-caching ``memoize(timeout=5)``, gets
  what its page sends: every panel's callback at every tick.
- **How.** Every tab ticks every 5 s (the dashboard's default refresh) at a random phase,
  over its own keep-alive connection to nginx, as a browser holds one; nginx pools its
  connections to gunicorn (``keepalive`` upstream), as an ALB pools its connections to
  targets. gunicorn runs the production configuration (2 workers x 4 threads on this
  machine). The tabs run in two client processes on the same 2 cores as the server; their
  CPU time is reported beside every level.
- **Data moves as in production** meanwhile (``bench.production_data``, its own process):
  shop events every second, host metrics every 10 s, metrics compaction every minute,
  compaction and rollups every 5 minutes.
- **Ramp.** Levels of tabs in steps, each measured over a window of at least 30 s after the
  new tabs have settled into their phase. A level passes when the p95 of every request is
  within 100 ms, nothing fails and no tab skips a tick; the figure is the largest passing
  level, in operators (one operator, one tab).

``--full`` adds finer steps, gunicorn's thread count measured at two levels (the setting
that chose the default), and a 10-minute memory soak at 5,000 Overview operators.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.operator_client import ClientPool, WindowStats, Workload
from bench.production_data import move_everything, stores_of
from bench.report import Report
from bench.serving import Served, ServingLake, dashboard_env, serve, serving_lake
from devtools.loopback import LoopbackProcess, nginx_proxy
from devtools.operators import (
    UPDATE_PATH,
    PageModel,
    PageSpec,
    PageTraffic,
    page_content,
    render_body,
)
from devtools.recording import PageRecording, record_page
from devtools.servers import REPO_ROOT

PERIOD_S = 5.0
BUDGET_MS = 100.0
GOALS = {"overview": 5000, "customer": 3000, "health": 3000}
# The drilled-into customer of the serving lake (bench.serving.serving_lake: customer 3).
CUSTOMER_NUMBER = 3


@dataclass(frozen=True)
class OperatorSettings:
    levels: dict[str, tuple[int, ...]]
    window_s: float = 30.0
    # New tabs start at a random phase within a period: a period and a bit, and every tab
    # has ticked at least once before a window opens.
    settle_s: float = PERIOD_S + 2.0
    processes: int = 2
    soak_s: float = 0.0
    soak_tabs: int = 5000
    thread_counts: tuple[int, ...] = ()
    thread_steps: int = 1  # levels above the Overview's best that the thread counts run

    @classmethod
    def for_mode(cls, full: bool) -> OperatorSettings:
        if full:
            return cls(
                levels={
                    "overview": tuple(range(1000, 8001, 500)),
                    "customer": tuple(range(500, 6001, 500)),
                    "health": tuple(range(500, 6001, 500)),
                    "ceiling": tuple(range(1000, 9001, 1000)),
                    "naive": (2, 5, 10, 20, 40, 80, 160),
                    "naive memo": (2, 5, 10, 20, 40, 80, 160, 320),
                },
                soak_s=600.0,
                thread_counts=(4, 8),
            )
        # Quick: coarse steps around the expected levels; a ramp stops at its first failure.
        # gunicorn's threads are compared at the Overview's best level only.
        return cls(
            levels={
                "overview": (500, 1000, 1500, 2000, 3000, 4000, 5000),
                "customer": (500, 1000, 1500, 2000, 3000),
                "health": (100, 250, 500, 1000, 2000),
                "ceiling": (1000, 2000, 4000, 6000),
                "naive": (1, 5, 25),
                "naive memo": (1, 5, 25, 100),
            },
            thread_counts=(4, 8),
            thread_steps=0,
        )


@dataclass
class Level:
    tabs: int
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    skipped_ticks: int
    ticks: int
    changed_share: float  # polls answered 200 (ours), of all ticks
    bytes_per_tick: float  # requests and answers on the wire, headers included
    unchanged_tick_bytes: float  # a lone poll and its 204, on the wire
    unchanged_answer_bytes: float  # the 204 alone, as nginx sends it
    client_cpu_per_s: float  # client processes' CPU seconds per wall second
    load_average: float
    last_error: str = ""

    def passes(self) -> bool:
        return self.errors == 0 and self.skipped_ticks == 0 and self.p95_ms <= BUDGET_MS


@dataclass
class Ramp:
    key: str
    label: str
    app: str
    levels: list[Level] = field(default_factory=list)
    rss_start_mib: dict[int, float] = field(default_factory=dict)
    rss_end_mib: dict[int, float] = field(default_factory=dict)

    def best(self) -> Level | None:
        passed = [level for level in self.levels if level.passes()]
        return max(passed, key=lambda level: level.tabs) if passed else None


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _level(tabs: int, stats: WindowStats) -> Level:
    ms = [value * 1000 for value in stats.latencies]
    return Level(
        tabs=tabs,
        requests_per_s=stats.requests / stats.wall_s if stats.wall_s else 0.0,
        p50_ms=_percentile(ms, 0.50),
        p95_ms=_percentile(ms, 0.95),
        p99_ms=_percentile(ms, 0.99),
        errors=stats.errors,
        skipped_ticks=stats.skipped_ticks,
        ticks=stats.ticks,
        changed_share=stats.changed_ticks / stats.ticks if stats.ticks else 0.0,
        bytes_per_tick=stats.tick_bytes / stats.ticks if stats.ticks else 0.0,
        unchanged_tick_bytes=(
            stats.unchanged_tick_bytes / stats.unchanged_ticks if stats.unchanged_ticks else 0.0
        ),
        unchanged_answer_bytes=(
            stats.unchanged_answer_bytes / stats.unchanged_ticks if stats.unchanged_ticks else 0.0
        ),
        client_cpu_per_s=stats.cpu_s / stats.wall_s if stats.wall_s else 0.0,
        load_average=round(os.getloadavg()[0], 2),
        last_error=stats.last_error,
    )


# ---- servers ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _behind_nginx(served: Served, folder: Path, max_tabs: int) -> Iterator[LoopbackProcess]:
    proxy = nginx_proxy(
        folder / f"nginx-{served.name}",
        [served.port],
        upstream_pool=64,
        connections=2 * max_tabs + 512,  # a tab, and an upstream connection per request in flight
        access_log=False,
    )
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


@contextlib.contextmanager
def _production_data(lake: ServingLake, folder: Path) -> Iterator[None]:
    """``bench.production_data`` in its own process group, stopped on the way out."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "production-data.log", "ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.production_data",
                "--lake-root",
                str(lake.lake_root),
                "--state-db",
                str(lake.state_db),
            ],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def _rss_mib(served: Served) -> dict[int, float]:
    return {pid: round(rss / 2**20, 1) for pid, rss in served.worker_rss_bytes().items()}


# ---- pages ------------------------------------------------------------------------------------


def _page_paths(lake: ServingLake) -> dict[str, tuple[str, str]]:
    customer = f"?customer={lake.customer}&day={lake.day.isoformat()}"
    return {
        "overview": ("Overview", "/"),
        "customer": ("Screen time, customer drilled into", f"/screen-time{customer}"),
        "health": ("Health", "/health"),
    }


def _learned(base_url: str, url_path: str, app: str = "ours") -> tuple[PageTraffic | None, Any]:
    dependencies = requests.get(f"{base_url}/_dash-dependencies", timeout=30).json()
    path, _, query = url_path.partition("?")
    spec = PageSpec(url_path, app, path, f"?{query}" if query else "")
    render = render_body(spec, dependencies)
    routed = requests.post(
        f"{base_url}{UPDATE_PATH}",
        data=render,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    content = page_content(routed.status_code, routed.content)
    if app == "naive":
        return None, PageModel(spec, dependencies, content, render)
    return PageTraffic.learned(url_path, dependencies, content), None


def record_pages(
    base_url: str, lake: ServingLake, folder: Path
) -> tuple[dict[str, PageTraffic], dict[str, PageRecording]]:
    """Each page recorded in Chromium; a panel whose data did not move while recording
    takes its callback as learnt from the dependencies (the same body: see
    ``tests/browser/test_operator_replay.py``)."""
    stores = stores_of(lake.lake_root, lake.state_db)
    traffic: dict[str, PageTraffic] = {}
    recordings: dict[str, PageRecording] = {}
    for key, (_, url_path) in _page_paths(lake).items():
        recording = record_page(
            base_url,
            url_path,
            change=lambda: move_everything(stores, CUSTOMER_NUMBER, lake.end_date),
        )
        (folder / f"recording-{key}.json").write_text(recording.as_json())
        learned, _ = _learned(base_url, url_path)
        traffic[key] = PageTraffic.from_recording(recording, learned)
        recordings[key] = recording
    return traffic, recordings


# ---- ramps ------------------------------------------------------------------------------------


def ramp(
    key: str,
    label: str,
    app: str,
    workload: Workload,
    levels: tuple[int, ...],
    settings: OperatorSettings,
) -> Ramp:
    """Grow the tabs level by level until one fails (or the levels run out)."""
    result = Ramp(key, label, app)
    pool = ClientPool(workload, settings.processes)
    try:
        for tabs in levels:
            pool.resize(tabs)
            time.sleep(settings.settle_s)
            level = _level(tabs, pool.measure(settings.window_s))
            result.levels.append(level)
            print(
                f"   {label}: {tabs} tabs, {level.requests_per_s:.0f} req/s, "
                f"p50 {level.p50_ms:.1f} ms, p95 {level.p95_ms:.1f} ms, "
                f"changed {level.changed_share:.1%}, {level.bytes_per_tick:.0f} B/tick, "
                f"errors {level.errors}, skipped {level.skipped_ticks}, client CPU "
                f"{level.client_cpu_per_s:.2f} s/s, load {level.load_average} -> "
                f"{'ok' if level.passes() else 'over'}"
                + (f" ({level.last_error})" if level.last_error else ""),
                file=sys.stderr,
                flush=True,
            )
            if not level.passes():
                break
    finally:
        pool.close()
    return result


def _serve_ours(
    lake: ServingLake, folder: Path, *, threads: int = 4
) -> contextlib.AbstractContextManager[Served]:
    return serve(
        f"ours-{threads}t", "wsgi:server", folder, dashboard_env(lake, PERIOD_S), threads=threads
    )


def run_operators(report: Report, folder: Path, *, full: bool) -> None:
    settings = OperatorSettings.for_mode(full)
    lake = serving_lake(folder.parent, full=full)
    folder.mkdir(parents=True, exist_ok=True)
    started_load = round(os.getloadavg()[0], 2)
    ramps: list[Ramp] = []
    tuning: list[dict[str, Any]] = []
    soak: dict[str, Any] = {}
    max_tabs = max(max(levels) for levels in settings.levels.values())
    with _production_data(lake, folder):
        with (
            _serve_ours(lake, folder) as ours,
            _behind_nginx(ours, folder, max(max_tabs, settings.soak_tabs)) as proxy,
        ):
            traffic, _ = record_pages(proxy.url, lake, folder)
            pages = _page_paths(lake)
            for key in ("overview", "customer", "health"):
                workload = Workload("ours", proxy.port, PERIOD_S, traffic=traffic[key])
                rss_start = _rss_mib(ours)
                done = ramp(
                    key, pages[key][0], "Mission Control", workload, settings.levels[key], settings
                )
                done.rss_start_mib, done.rss_end_mib = rss_start, _rss_mib(ours)
                ramps.append(done)
            if settings.soak_s:
                soak = _soak(ours, proxy, traffic["overview"], settings)
        if settings.thread_counts:
            tuning = _threads(lake, folder, settings, ramps[0])
        overview_poll = traffic["overview"]
        with (
            serve("ceiling", "bench.ceiling_app:create_ceiling_app()", folder, {}) as ceiling,
            _behind_nginx(ceiling, folder, max_tabs) as proxy,
        ):
            workload = Workload("ceiling", proxy.port, PERIOD_S, traffic=overview_poll)
            ramps.append(
                ramp(
                    "ceiling",
                    "bare Flask, the Overview's poll",
                    "ceiling",
                    workload,
                    settings.levels["ceiling"],
                    settings,
                )
            )
        for key, factory in (
            ("naive", "bench.naive_app:create_naive_app()"),
            ("naive memo", "bench.naive_app:create_naive_app(memo_seconds=5)"),
        ):
            name = key.replace(" ", "-")
            with (
                serve(name, factory, folder, lake.env()) as naive,
                _behind_nginx(naive, folder, max_tabs) as proxy,
            ):
                _, model = _learned(proxy.url, "/", app="naive")
                workload = Workload("naive", proxy.port, PERIOD_S, naive=model)
                rss_start = _rss_mib(naive)
                done = ramp(key, f"{key}: Overview", key, workload, settings.levels[key], settings)
                done.rss_start_mib, done.rss_end_mib = rss_start, _rss_mib(naive)
                ramps.append(done)
    _report(report, settings, ramps, tuning, soak, started_load)


# ---- full mode: threads and soak ----------------------------------------------------------------


def _threads(
    lake: ServingLake, folder: Path, settings: OperatorSettings, overview: Ramp
) -> list[dict[str, Any]]:
    """The Overview at the best passing level and one step above, per thread count."""
    best = overview.best()
    base = best.tabs if best else settings.levels["overview"][0]
    levels = tuple(base + 500 * n for n in range(settings.thread_steps + 1))
    found = []
    for threads in settings.thread_counts:
        with (
            _serve_ours(lake, folder / f"threads-{threads}", threads=threads) as ours,
            _behind_nginx(ours, folder / f"threads-{threads}", levels[-1]) as proxy,
        ):
            learned, _ = _learned(proxy.url, "/")
            assert learned is not None
            workload = Workload("ours", proxy.port, PERIOD_S, traffic=learned)
            pool = ClientPool(workload, settings.processes)
            try:
                for tabs in levels:
                    pool.resize(tabs)
                    time.sleep(settings.settle_s)
                    level = _level(tabs, pool.measure(settings.window_s))
                    found.append({"threads": threads, **dataclasses.asdict(level)})
                    print(
                        f"   threads {threads}: {tabs} tabs, p95 {level.p95_ms:.1f} ms, "
                        f"{level.requests_per_s:.0f} req/s, errors {level.errors}",
                        file=sys.stderr,
                        flush=True,
                    )
            finally:
                pool.close()
    return found


def _soak(
    ours: Served, proxy: LoopbackProcess, traffic: PageTraffic, settings: OperatorSettings
) -> dict[str, Any]:
    """``soak_tabs`` Overview tabs for ``soak_s``; worker RSS at the start and the end."""
    workload = Workload("ours", proxy.port, PERIOD_S, traffic=traffic)
    pool = ClientPool(workload, settings.processes)
    try:
        pool.resize(settings.soak_tabs)
        time.sleep(settings.settle_s + 30.0)  # caches fill before the first sample
        start = _rss_mib(ours)
        level = _level(settings.soak_tabs, pool.measure(settings.soak_s))
        end = _rss_mib(ours)
    finally:
        pool.close()
    growth = {pid: (end[pid] - start[pid]) / start[pid] * 100 for pid in start if pid in end}
    return {
        "tabs": settings.soak_tabs,
        "seconds": settings.soak_s,
        "rss_start_mib": start,
        "rss_end_mib": end,
        "growth_percent": growth,
        "level": dataclasses.asdict(level),
    }


# ---- the report -------------------------------------------------------------------------------


def _method(settings: OperatorSettings, ramp_: Ramp) -> str:
    steps = settings.levels[ramp_.key]
    return (
        f"tabs at {PERIOD_S:g} s through nginx, levels {', '.join(map(str, steps))} "
        f"(stopped at the first failing one), {settings.window_s:g} s windows"
    )


def _report(
    report: Report,
    settings: OperatorSettings,
    ramps: list[Ramp],
    tuning: list[dict[str, Any]],
    soak: dict[str, Any],
    started_load: float,
) -> None:
    ceiling = next((r for r in ramps if r.key == "ceiling"), None)
    ceiling_best = ceiling.best() if ceiling else None
    rows = [
        (
            "ramp",
            "operators",
            "req/s",
            "p95 ms",
            "B/tick",
            "unchanged B",
            "changed",
            "client CPU s/s",
            "next level",
        )
    ]
    for ramp_ in ramps:
        best = ramp_.best()
        failed = next((lv for lv in ramp_.levels if not lv.passes()), None)
        goal = GOALS.get(ramp_.key)
        report.add(
            "operators",
            f"operators at {PERIOD_S:g} s, p95 < {BUDGET_MS:.0f} ms, no errors: {ramp_.label}",
            best.tabs if best else 0,
            ratio=(best.tabs / ceiling_best.tabs) if best and ceiling_best else None,
            ratio_to="bare Flask ceiling" if ramp_.key != "ceiling" else "",
            target=f">= {goal:,}" if goal else "",
            note=(
                f"{best.requests_per_s:.0f} req/s, p95 {best.p95_ms:.0f} ms, "
                f"{best.bytes_per_tick:.0f} B per tick on the wire, "
                f"{best.changed_share:.1%} of polls changed, client CPU "
                f"{best.client_cpu_per_s:.2f} s/s; "
                if best
                else "no level passed; "
            )
            + (
                f"next level {failed.tabs}: p95 {failed.p95_ms:.0f} ms, errors "
                f"{failed.errors}, skipped ticks {failed.skipped_ticks}; "
                if failed
                else ""
            )
            + _method(settings, ramp_),
        )
        rows.append(
            (
                ramp_.label,
                f"{best.tabs:,}" if best else "0",
                f"{best.requests_per_s:.0f}" if best else "",
                f"{best.p95_ms:.0f}" if best else "",
                f"{best.bytes_per_tick:.0f}" if best else "",
                f"{best.unchanged_tick_bytes:.0f}" if best and best.unchanged_tick_bytes else "",
                f"{best.changed_share:.1%}" if best and ramp_.app == "Mission Control" else "",
                f"{best.client_cpu_per_s:.2f}" if best else "",
                f"{failed.tabs:,}: p95 {failed.p95_ms:.0f} ms, {failed.errors} err"
                if failed
                else "(levels ran out)",
            )
        )
    unchanged = [
        lv
        for r in ramps
        if r.app == "Mission Control"
        for lv in r.levels
        if lv.unchanged_tick_bytes
    ]
    if unchanged:
        lightest = min(unchanged, key=lambda lv: lv.unchanged_tick_bytes)
        report.add(
            "operators",
            "an unchanged tick on the wire: the 204 answer (status line and headers)",
            lightest.unchanged_answer_bytes,
            unit="B",
            target="<= 300 B",
            note=f"as nginx sends it; with the poll request, {lightest.unchanged_tick_bytes:.0f}"
            " B a tick (the request carries the version of every panel)",
        )
    for entry in tuning:
        report.add(
            "operators",
            f"gunicorn {entry['threads']} threads: Overview at {entry['tabs']:,} tabs",
            entry["p95_ms"],
            unit="ms p95",
            note=f"{entry['requests_per_s']:.0f} req/s, errors {entry['errors']}, skipped "
            f"ticks {entry['skipped_ticks']}",
        )
    if soak:
        report.add(
            "operators",
            f"worker RSS growth over a {soak['seconds'] / 60:.0f}-minute soak at "
            f"{soak['tabs']:,} Overview operators",
            max(soak["growth_percent"].values()) if soak["growth_percent"] else None,
            unit="%",
            target="<= 5%",
            note="per worker start -> end MiB: "
            + ", ".join(
                f"{soak['rss_start_mib'][pid]:.0f} -> {soak['rss_end_mib'].get(pid, 0):.0f}"
                for pid in soak["rss_start_mib"]
            ),
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    report.tables["operators"] = (
        f"Operators at {PERIOD_S:g} s (p95 < {BUDGET_MS:.0f} ms, no errors, no skipped tick), "
        f"through nginx; load average {started_load} at the start, "
        f"{os.getloadavg()[0]:.2f} at the end:\n" + "\n".join(line.rstrip() for line in lines)
    )
    report.details["operators"] = {
        "method": {
            "period_s": PERIOD_S,
            "window_s": settings.window_s,
            "settle_s": settings.settle_s,
            "budget_ms": BUDGET_MS,
            "levels": {key: list(levels) for key, levels in settings.levels.items()},
            "client_processes": settings.processes,
            "connections": "one keep-alive connection per tab to nginx; nginx keeps up to 64 "
            "idle keep-alive connections to gunicorn (upstream keepalive), as an ALB pools",
            "gunicorn": "gunicorn.conf.py, 2 workers x 4 threads (gthread)",
            "data": "bench.production_data: events every 1 s, host metrics every 10 s, "
            "metrics compaction every 60 s, compaction and rollups every 300 s",
            "traffic": "Mission Control: recorded in headless Chromium and replayed per tab; "
            "naive apps: every panel's callback per tick; ceiling: the Overview's poll",
            "load_average_start": started_load,
            "load_average_end": round(os.getloadavg()[0], 2),
        },
        "ramps": [
            {
                "key": r.key,
                "label": r.label,
                "app": r.app,
                "best_tabs": r.best().tabs if r.best() else 0,
                "rss_start_mib": r.rss_start_mib,
                "rss_end_mib": r.rss_end_mib,
                "levels": [dataclasses.asdict(level) for level in r.levels],
            }
            for r in ramps
        ],
        "threads": tuning,
        "soak": soak,
    }
