"""SIGKILL one gunicorn worker while operators poll: clients retry and carry on, the master
starts a replacement, a browser tab's panels keep refreshing, and the lake is intact.

The dashboard itself accepts no data (ingest has its own crash test in tests/live, which
proves every event answered 202 survives a killed worker); what must survive here is the
service: no request fails for good, no panel in an open tab stops refreshing.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import psutil
import pytest
import requests

from tests.faults.panels import CallbackLog
from tests.integrity.checks import assert_reconciled
from tests.load.operators import DashSite, LoadSummary, run_operators
from tests.plugins.browser import VIEWPORT, DashboardServer, SampleLake, wait_for_panels
from tests.plugins.faults import wait_until

pytestmark = pytest.mark.browser

OPERATORS = 6
RUN_SECONDS = 24.0
KILL_AFTER_SECONDS = 8.0
RETRIES = 4  # a client's extra attempts; the Dash renderer's next tick is its own retry
PANELS_ON_OVERVIEW = ("overview-kpis", "overview-revenue", "overview-products")


@pytest.fixture(scope="module")
def crash_server(sample_lake: SampleLake) -> Iterator[DashboardServer]:
    server = DashboardServer(sample_lake)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


def _workers(server: DashboardServer) -> set[int]:
    assert server.pid is not None
    return {child.pid for child in psutil.Process(server.pid).children()}


@pytest.fixture
def crash_page(browser, crash_server: DashboardServer) -> Iterator[object]:
    context = browser.new_context(viewport=VIEWPORT, base_url=crash_server.url)
    context.set_default_timeout(30_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def test_a_killed_worker_is_replaced_and_clients_recover(
    crash_server: DashboardServer, sample_lake: SampleLake, crash_page
):
    page = crash_page
    page.goto("/")
    wait_for_panels(page)
    log = CallbackLog(page)
    site = DashSite(crash_server.url)
    pages = [("/", ""), ("/screen-time", ""), ("/revenue", "")]
    before = _workers(crash_server)
    assert len(before) == 2, before
    killed: dict[str, float | int] = {}

    def kill_one_worker(stop: threading.Event) -> None:
        if stop.wait(KILL_AFTER_SECONDS):
            return
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        killed.update(pid=victim, at=time.monotonic())

        def replaced() -> bool:
            now = _workers(crash_server)
            return len(now - before) == 1 and victim not in now

        killed["replaced"] = wait_until(replaced, timeout=30)

    operators = run_operators(
        site,
        count=OPERATORS,
        seconds=RUN_SECONDS,
        pages=pages,
        refresh_seconds=1.0,
        retries=RETRIES,
        during=kill_one_worker,
    )
    assert killed.get("replaced"), f"no replacement for worker {killed.get('pid')}"
    after_workers = _workers(crash_server)
    assert len(after_workers) == 2 and killed["pid"] not in after_workers

    samples = [sample for operator in operators for sample in operator.samples]
    summary = LoadSummary.of(samples)
    # Every request answered in the end: a reset connection was retried and succeeded.
    assert summary.errors == 0, [s for s in samples if s.status not in (200, 204)][:10]
    assert summary.degraded == 0, summary
    settled = float(killed["at"]) + 3.0
    for operator in operators:
        later = [s for s in operator.samples if s.at > settled and s.status in (200, 204)]
        assert later, "an operator stopped getting answers after the kill"

    # The browser tab: each panel is answered again after the kill (none stuck "busy").
    page.wait_for_timeout(3000)
    for panel in PANELS_ON_OVERVIEW:
        answered = [c for c in log.since(settled, panel) if c.status in (200, 204)]
        assert answered, f"{panel} stopped refreshing: {log.since(float(killed['at']), panel)}"
    assert requests.get(f"{crash_server.url}/healthz", timeout=10).status_code == 200
    assert_reconciled(sample_lake.stores())
