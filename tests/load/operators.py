"""Simulated operators: what a browser tab on the dashboard sends, over plain HTTP.

An operator opens a page (the HTML, Dash's layout, the pages router callback, then each
panel's first answer), then at every refresh sends each panel's poll callback with the data
version it holds, exactly as the Dash renderer does: an unchanged version answers 204, a new
one 200 with the new content and version. Now and then it moves to another page.

The request bodies come from ``devtools.operators``, the renderer emulator the bench uses
too, built from the app's own ``/_dash-dependencies`` and the router's answer, so a panel
added to a page is polled without changing this file.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import requests

from devtools.operators import (
    ROUTER_INPUT,
    UPDATE_PATH,
    PageModel,
    PageSpec,
    Panel,
    page_content,
    render_body,
)

# What a poll may answer: new data, or nothing new.
OK_STATUSES = frozenset({200, 204})
JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Sample:
    at: float  # monotonic seconds when the request was sent
    kind: str  # "page", "layout", "router", "first", "poll"
    seconds: float
    status: int  # 0: no answer (connection refused or reset, timeout)
    attempts: int = 1
    error: str = ""
    degraded: bool = False  # a panel answer whose status line reports a problem


class DashSite:
    """What the operators need to know about the app: its callbacks, learnt once."""

    def __init__(self, base_url: str, session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        http = session or requests.Session()
        dependencies = http.get(f"{self.base_url}/_dash-dependencies", timeout=30)
        dependencies.raise_for_status()
        self.dependencies: list[dict[str, Any]] = dependencies.json()
        if not any(
            item["id"] == ROUTER_INPUT for dep in self.dependencies for item in dep["inputs"]
        ):
            raise AssertionError("the pages router callback is not registered")


@dataclass
class Operator:
    """One simulated browser tab; ``run`` until ``stop`` is set, recording every request."""

    site: DashSite
    pages: list[tuple[str, str]]  # (path, search) pairs visited in turn
    refresh_seconds: float
    stop: threading.Event
    ticks_per_page: int = 20
    retries: int = 0  # extra attempts after a failed request (0: count it as an error)
    retry_pause_seconds: float = 0.2
    headers: dict[str, str] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    seed: int = 0

    def __post_init__(self) -> None:
        self.client_id = uuid.uuid4().hex
        self._http = requests.Session()
        self._http.headers.update(self.headers)
        self._random = random.Random(self.seed)

    def _send(self, kind: str, method: str, path: str, **kwargs: Any) -> requests.Response | None:
        started = time.monotonic()
        error = ""
        for attempt in range(1, self.retries + 2):
            try:
                response = self._http.request(
                    method, f"{self.site.base_url}{path}", timeout=30, **kwargs
                )
            except requests.RequestException as exc:
                error = type(exc).__name__
                response = None
            if response is not None and response.status_code < 500:
                self.samples.append(
                    Sample(started, kind, time.monotonic() - started, response.status_code, attempt)
                )
                return response
            if response is not None:
                error = f"HTTP {response.status_code}"
            if attempt <= self.retries and not self.stop.is_set():
                time.sleep(self.retry_pause_seconds * attempt)
        status = response.status_code if response is not None else 0
        self.samples.append(
            Sample(started, kind, time.monotonic() - started, status, self.retries + 1, error)
        )
        return None

    def _open(self, path: str, search: str) -> tuple[PageModel, list[Panel]] | None:
        spec = PageSpec(path + search, "ours", path, search)
        self._send("page", "GET", spec.url_path, headers={"Accept": "text/html"})
        self._send("layout", "GET", "/_dash-layout")
        render = render_body(spec, self.site.dependencies)
        routed = self._send("router", "POST", UPDATE_PATH, data=render, headers=JSON_HEADERS)
        if routed is None or routed.status_code != 200:
            return None
        model = PageModel(
            spec, self.site.dependencies, page_content(routed.status_code, routed.content), render
        )
        panels = model.new_panels()
        for panel in panels:
            self._poll(model, panel, 0, "first")
        return model, panels

    def _poll(self, model: PageModel, panel: Panel, tick: int, kind: str) -> None:
        body = panel.body(tick, self.client_id, model.state, model.trigger_for(panel))
        answer = self._send(kind, "POST", UPDATE_PATH, data=body, headers=JSON_HEADERS)
        if answer is None or answer.status_code != 200:
            return  # a 204: the panel keeps the version it shows
        status = panel.status_message(answer.content)
        if status:
            last = self.samples[-1]
            self.samples[-1] = Sample(
                last.at, last.kind, last.seconds, last.status, last.attempts, status, True
            )
        panel.remember(answer.status_code, answer.content)

    def run(self) -> None:
        # Start at a random page and phase, so operators do not poll in lock step.
        self.stop.wait(self._random.uniform(0, self.refresh_seconds))
        start = self._random.randrange(len(self.pages))
        for path, search in itertools.islice(itertools.cycle(self.pages), start, None):
            if self.stop.is_set():
                return
            opened = self._open(path, search)
            for _ in range(self.ticks_per_page):
                if self.stop.wait(self.refresh_seconds):
                    return
                if opened is None:
                    continue
                model, panels = opened
                # The renderer sends the tick time in milliseconds as the tick's value.
                tick = int(time.time() * 1000)
                for panel in panels:
                    self._poll(model, panel, tick, "poll")


@dataclass(frozen=True)
class LoadSummary:
    requests: int
    errors: int
    by_status: dict[int, int]
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    retried: int
    degraded: int

    @classmethod
    def of(cls, samples: Iterable[Sample], kinds: Iterable[str] | None = None) -> LoadSummary:
        wanted = set(kinds) if kinds is not None else None
        chosen = [s for s in samples if wanted is None or s.kind in wanted]
        durations = sorted(s.seconds * 1000 for s in chosen)
        by_status: dict[int, int] = {}
        for sample in chosen:
            by_status[sample.status] = by_status.get(sample.status, 0) + 1

        def percentile(fraction: float) -> float:
            if not durations:
                return 0.0
            return durations[min(len(durations) - 1, int(fraction * len(durations)))]

        return cls(
            requests=len(chosen),
            errors=sum(1 for s in chosen if s.status not in OK_STATUSES and s.status != 302),
            by_status=by_status,
            p50_ms=round(percentile(0.50), 1),
            p95_ms=round(percentile(0.95), 1),
            p99_ms=round(percentile(0.99), 1),
            max_ms=round(durations[-1], 1) if durations else 0.0,
            retried=sum(1 for s in chosen if s.attempts > 1),
            degraded=sum(1 for s in chosen if s.degraded),
        )


def run_operators(
    site: DashSite,
    *,
    count: int,
    seconds: float,
    pages: list[tuple[str, str]],
    refresh_seconds: float,
    retries: int = 0,
    during: Callable[[threading.Event], None] | None = None,
) -> list[Operator]:
    """``count`` operators for ``seconds``; ``during(stop)`` runs in the calling thread
    meanwhile (e.g. a writer or a fault), and must return by the time ``stop`` is set."""
    stop = threading.Event()
    operators = [
        Operator(site, pages, refresh_seconds, stop, retries=retries, seed=number)
        for number in range(count)
    ]
    threads = [
        threading.Thread(target=operator.run, name=f"operator-{n}", daemon=True)
        for n, operator in enumerate(operators)
    ]
    for thread in threads:
        thread.start()
    timer = threading.Timer(seconds, stop.set)
    timer.start()
    try:
        if during is not None:
            during(stop)
        stop.wait(seconds + 5)
    finally:
        stop.set()
        timer.cancel()
        for thread in threads:
            thread.join(40)
    assert not any(thread.is_alive() for thread in threads), "an operator did not stop"
    return operators
