"""Simulated operators: what a browser tab on the dashboard sends, over plain HTTP.

An operator opens a page (the HTML, Dash's layout, the pages router callback, then a first
poll, whose answer names every panel, and each panel's callback), then at every refresh
sends the page's one ``POST /poll`` with the versions its panels show: an unchanged tick
answers 204; a 200 names the changed panels, whose Dash callbacks it then posts and whose
new versions it keeps. Now and then it moves to another page.

The request bodies come from ``devtools.operators`` (``PageTraffic``, ``Tab``), the browser
emulator the bench uses too, learnt from the app's own ``/_dash-dependencies`` and the
router's answer, so a panel added to a page is polled without changing this file.
"""

from __future__ import annotations

import contextlib
import itertools
import json
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
    PageSpec,
    PageTraffic,
    Tab,
    page_content,
    render_body,
)

# What a poll may answer: new data, or nothing new.
OK_STATUSES = frozenset({200, 204})
JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Sample:
    at: float  # monotonic seconds when the request was sent
    kind: str  # "page", "layout", "router", "first", "poll", "refresh"
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

    def _open(self, path: str, search: str) -> Tab | None:
        spec = PageSpec(path + search, "ours", path, search)
        self._send("page", "GET", spec.url_path, headers={"Accept": "text/html"})
        self._send("layout", "GET", "/_dash-layout")
        render = render_body(spec, self.site.dependencies)
        routed = self._send("router", "POST", UPDATE_PATH, data=render, headers=JSON_HEADERS)
        if routed is None or routed.status_code != 200:
            return None
        content = page_content(routed.status_code, routed.content)
        traffic = PageTraffic.learned(spec.url_path, self.site.dependencies, content)
        tab = traffic.new_tab(self.client_id)
        # No version shown yet: the first poll names every panel, as a fresh page's does.
        self._tick(tab, "first")
        return tab

    def _tick(self, tab: Tab, kind: str) -> None:
        poll = tab.poll()
        answer = self._send(kind, "POST", poll.path, data=poll.body, headers=JSON_HEADERS)
        if answer is None:
            return
        for panel, request in tab.answer_poll(answer.status_code, answer.content):
            refreshed = self._send(
                "refresh", request.method, request.path, data=request.body, headers=JSON_HEADERS
            )
            if refreshed is None:
                continue
            status = _status_message(panel, refreshed.content)
            if status:
                last = self.samples[-1]
                self.samples[-1] = Sample(
                    last.at, last.kind, last.seconds, last.status, last.attempts, status, True
                )
            tab.answer_refresh(panel, refreshed.status_code, refreshed.content)

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
                if opened is not None:
                    self._tick(opened, "poll")


def _status_message(panel: str, body: bytes) -> str:
    """The panel's status line in a callback's 200 answer: set when it reports a problem."""
    key = json.dumps({"panel": panel, "type": "mc-status"}, separators=(",", ":"))
    with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
        return str(json.loads(body)["response"][key]["children"] or "")
    return ""


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
