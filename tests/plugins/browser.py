"""Fixtures for the browser tier: a sample lake, the dashboard under gunicorn, headless Chromium.

``sample_lake`` runs the real pipeline on small sizes; ``live_server`` serves it with the same
gunicorn command as production, bound to a free loopback port, in its own process group that
dies with the test run; ``browser``/``page`` drive Debian's Chromium through Playwright.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from data_access.factory import build_stores
from data_access.settings import DataSettings
from data_access.stores import Stores
from devtools.chromium import CHROMIUM, VIEWPORT, chromium
from devtools.servers import (
    LOOPBACK,
    REPO_ROOT,
    ServerProcess,
    ServerUnavailable,
    free_port,
    gunicorn_command,
)

SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
# Fast polls in tests: the refresh picker's fastest choice and the server's floor below it.
REFRESH_MS = 1000
WORKERS, THREADS = 2, 4
SAMPLE_CUSTOMERS = 12
SAMPLE_DAYS = 14
SAMPLE_SEED = 7
SAMPLE_BAD_UPLOADS = 2


@dataclass(frozen=True)
class SampleLake:
    root: Path
    settings: DataSettings
    end_date: dt.date
    customers: int
    days: int
    seed: int

    def stores(self) -> Stores:
        """Fresh stores over the same files the server reads."""
        return build_stores(self.settings)


def build_sample_lake(root: Path, *, customers: int, days: int, end_date: dt.date) -> SampleLake:
    """Generate, process, compact and roll up, exactly as ``make sample`` does."""
    from pipeline.alerts import AlertSettings, evaluate
    from pipeline.events import compact_events, compact_metrics
    from pipeline.generate import generate
    from pipeline.process import drain
    from pipeline.rollup import rollup_all

    settings = DataSettings(lake_root=root / "lake", state_db=root / "state.sqlite")
    stores = build_stores(settings)
    generate(
        stores.lake,
        queue=stores.queue,
        customers=customers,
        days=days,
        seed=SAMPLE_SEED,
        end_date=end_date,
        bad_uploads=SAMPLE_BAD_UPLOADS,
    )
    drain(stores)
    compact_events(stores)
    compact_metrics(stores)
    rollup_all(stores)
    # A CPU threshold every host passes, so the alerts page has an open alert to list.
    evaluate(stores, AlertSettings(cpu_percent=1.0))
    return SampleLake(root, settings, end_date, customers, days, SAMPLE_SEED)


@pytest.fixture(scope="session")
def sample_lake(tmp_path_factory: pytest.TempPathFactory) -> SampleLake:
    return build_sample_lake(
        tmp_path_factory.mktemp("browser-lake"),
        customers=SAMPLE_CUSTOMERS,
        days=SAMPLE_DAYS,
        end_date=dt.datetime.now(dt.UTC).date(),
    )


class DashboardServer(ServerProcess):
    """``gunicorn wsgi:server`` as production runs it, over the sample lake, on loopback."""

    name = "dashboard"
    start_timeout_seconds = 45.0

    def __init__(self, lake: SampleLake, extra_env: dict[str, str] | None = None) -> None:
        super().__init__()
        self.lake = lake
        self.port = free_port()
        self.extra_env = dict(extra_env or {})

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def ports(self) -> list[int]:
        return [self.port]

    def command(self) -> list[str]:
        return gunicorn_command("wsgi:server", self.port, workers=WORKERS, threads=THREADS)

    def child_env(self) -> dict[str, str]:
        home = self.workdir / "home"
        env = {
            **os.environ,
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_RUNTIME_DIR": str(home / "run"),
            "DATA_BACKEND": "local",
            "AUTH_MODE": "dev",
            "LAKE_ROOT": str(self.lake.settings.lake_root),
            "STATE_DB": str(self.lake.settings.state_db),
            "REFRESH_CHOICES_MS": f"{REFRESH_MS},5000",
            "REFRESH_DEFAULT_MS": str(REFRESH_MS),
            "REFRESH_FLOOR_MS": str(REFRESH_MS * 4 // 5),
            # New uploads must show at the next poll, not after a version memo.
            "VERSION_MEMO_SECONDS": "0.2",
            "PROBE_TIMEOUT_SECONDS": "1",
            "HEALTH_ENDPOINTS": f"Dashboard healthz={self.url}/healthz",
            **self.extra_env,
        }
        env.pop("REDIS_URL", None)
        for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR"):
            Path(env[name]).mkdir(parents=True, exist_ok=True, mode=0o700)
        return env

    def answers(self) -> bool:
        try:
            return requests.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def warm_up_workers(self, timeout_seconds: float = 45.0) -> None:
        """Return once every worker has answered a request, one request at a time.

        Dash finishes its setup on a worker's first request; a request that reaches the same
        worker meanwhile (a browser loads a dozen scripts at once) can get a 404 for a script,
        and the page stays at "Loading...". Workers boot at their own pace, so this asks
        /healthz on new connections until the access log (JSON lines with the worker's pid)
        shows every worker has served one.
        """
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            requests.get(f"{self.url}/healthz", timeout=5, headers={"Connection": "close"})
            if len(self._healthz_pids()) >= WORKERS:
                return
            time.sleep(0.05)
        raise ServerUnavailable(
            f"only workers {sorted(self._healthz_pids())} of {WORKERS} answered within "
            f"{timeout_seconds:.0f} s; log {self.log_path}:\n{self.log_tail()}"
        )

    def _healthz_pids(self) -> set[int]:
        pids = set()
        for line in self.log_tail(1_000_000).splitlines():
            if '"/healthz"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("path") == "/healthz" and entry.get("pid"):
                pids.add(int(entry["pid"]))
        return pids


@pytest.fixture(scope="session")
def live_server(sample_lake: SampleLake) -> Iterator[DashboardServer]:
    server = DashboardServer(sample_lake)
    try:
        server.start()
        server.warm_up_workers()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: run `scripts/install-test-deps.sh` (as root) to install "
            "Debian's chromium for the browser tests"
        )
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        with chromium(playwright, downloads=True) as launched:
            yield launched
    finally:
        playwright.stop()


class ConsoleLog:
    """Console errors, page errors and unfinished requests of one page, for assertions and
    for saying why a page did not load."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.pending: dict[object, str] = {}

    def on_console(self, message) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def on_page_error(self, error) -> None:
        self.errors.append(f"page error: {error}")

    def on_request(self, request) -> None:
        self.pending[request] = f"{request.method} {request.url}"

    def on_request_done(self, request) -> None:
        self.pending.pop(request, None)

    def on_response(self, response) -> None:
        if response.status >= 400:
            self.errors.append(f"HTTP {response.status} for {response.url}")


@pytest.fixture
def page(browser, live_server: DashboardServer) -> Iterator[object]:
    """A fresh light-theme page at 1400x1000; ``page.console`` holds its console errors."""
    context = browser.new_context(
        viewport=VIEWPORT, color_scheme="light", accept_downloads=True, base_url=live_server.url
    )
    context.set_default_timeout(20_000)
    tab = context.new_page()
    console = ConsoleLog()
    tab.on("console", console.on_console)
    tab.on("pageerror", console.on_page_error)
    tab.on("request", console.on_request)
    tab.on("requestfinished", console.on_request_done)
    tab.on("requestfailed", console.on_request_done)
    tab.on("response", console.on_response)
    tab.console = console
    try:
        yield tab
    finally:
        context.close()


# ---- helpers the browser tests share ---------------------------------------------------------

PAGES = {
    "overview": "/",
    "screen-time": "/screen-time",
    "revenue": "/revenue",
    "alerts": "/alerts",
    "health": "/health",
    "lake": "/lake",
}


def dom_id(panel: str, part: str) -> str:
    """A CSS selector for a panel part: Dash writes dict ids as JSON with sorted keys."""
    return f"""[id='{{"panel":"{panel}","type":"mc-{part}"}}']"""


@dataclass(frozen=True)
class DashCall:
    at: float  # monotonic seconds
    output: str
    status: int


class DashTraffic:
    """Every Dash callback answer a page receives: which outputs, when, and its status.

    Dash answers 200 with new values, and 204 when every output is ``no_update``.
    """

    def __init__(self, page) -> None:
        self.calls: list[DashCall] = []
        page.on("response", self._record)

    def _record(self, response) -> None:
        if "/_dash-update-component" not in response.url:
            return
        try:
            body = response.request.post_data_json or {}
        except ValueError:
            body = {}
        self.calls.append(DashCall(time.monotonic(), str(body.get("output", "")), response.status))

    def since(self, mark: float, panel: str | None = None) -> list[DashCall]:
        return [
            call
            for call in self.calls
            if call.at >= mark and (panel is None or f'"panel":"{panel}"' in call.output)
        ]


def wait_for_panels(page, timeout_ms: int = 30_000) -> None:
    """Until every panel on the page has answered once: no skeleton placeholders remain."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(
            "() => document.querySelectorAll('.mc-skeleton').length === 0"
            " && document.querySelectorAll('.mc-panel').length > 0",
            timeout=timeout_ms,
        )
    except PlaywrightTimeout:
        waiting = page.evaluate(
            """() => Array.from(document.querySelectorAll('.mc-skeleton')).map(
                element => (element.closest('.mc-panel') || {id: '(outside a panel)'}).id)"""
        )
        panels = page.locator(".mc-panel").count()
        text = page.locator("body").inner_text()[:300]
        console = getattr(page, "console", None)
        pending = sorted(console.pending.values()) if console else []
        errors = console.errors if console else []
        raise AssertionError(
            f"panels still loading after {timeout_ms} ms on {page.url}: {waiting} "
            f"({panels} panels; page text: {text!r}; requests unanswered: {pending}; "
            f"console errors: {errors})"
        ) from None
