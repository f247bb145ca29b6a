"""Simulated operators: what a browser tab on the dashboard sends, over plain HTTP.

An operator opens a page (the HTML, Dash's layout, the pages router callback, then each
panel's first answer), then at every refresh sends each panel's poll callback with the data
version it holds, exactly as the Dash renderer does: an unchanged version answers 204, a new
one 200 with the new content and version. Now and then it moves to another page.

The request bodies are built from the app's own ``/_dash-dependencies`` and the router's
answer, so a panel added to a page is polled without changing this file.
"""

from __future__ import annotations

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

ROUTER_INPUT = "_pages_location"
CALLBACK_PATH = "/_dash-update-component"
# What a poll may answer: new data, or nothing new.
OK_STATUSES = frozenset({200, 204})


def _id_key(component_id: Any) -> str:
    if isinstance(component_id, dict):
        return json.dumps(component_id, sort_keys=True, separators=(",", ":"))
    return str(component_id)


def _component_id(value: Any) -> Any:
    """Dependencies name pattern-matching ids as JSON text; requests carry them as objects."""
    if isinstance(value, str) and value.startswith("{"):
        return json.loads(value)
    return value


def _parse_outputs(output: str) -> list[dict[str, Any]]:
    """Dash's output string ("id.prop" or "..id1.prop1...id2.prop2..") as ``outputs``."""
    text = output[2:-2] if output.startswith("..") and output.endswith("..") else output
    parsed = []
    for part in text.split("..."):
        component, _, prop = part.rpartition(".")
        parsed.append(
            {
                "id": _component_id(component),
                "property": prop.split("@", 1)[0],
            }
        )
    return parsed


@dataclass(frozen=True)
class PanelCallback:
    panel: str
    output: str
    outputs: list[dict[str, Any]]
    inputs: list[dict[str, Any]]
    state: list[dict[str, Any]]

    @property
    def version_key(self) -> str:
        return _id_key({"panel": self.panel, "type": "mc-version"})

    @property
    def status_key(self) -> str:
        return _id_key({"panel": self.panel, "type": "mc-status"})

    def body(self, version: str | None, client_id: str, view_state: Any) -> dict[str, Any]:
        values = {
            _id_key({"panel": self.panel, "type": "mc-version"}): version,
            "mc-client": client_id,
            "mc-state": view_state,
        }

        def entry(item: dict[str, Any], value: Any) -> dict[str, Any]:
            return {"id": item["id"], "property": item["property"], "value": value}

        tick = int(time.time() * 1000)
        return {
            "output": self.output,
            "outputs": self.outputs,
            "inputs": [entry(item, tick) for item in self.inputs],
            "state": [entry(item, values.get(_id_key(item["id"]))) for item in self.state],
            "changedPropIds": [f"{_id_key(item['id'])}.{item['property']}" for item in self.inputs],
        }


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
    """What the operators need to know about the app: its panel callbacks and router."""

    def __init__(self, base_url: str, session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        http = session or requests.Session()
        dependencies = http.get(f"{self.base_url}/_dash-dependencies", timeout=30)
        dependencies.raise_for_status()
        self.panels: dict[str, PanelCallback] = {}
        self.router: dict[str, Any] | None = None
        for dependency in dependencies.json():
            output = dependency["output"]
            inputs = [
                {"id": _component_id(i["id"]), "property": i["property"]}
                for i in dependency["inputs"]
            ]
            if any(i["id"] == ROUTER_INPUT for i in inputs):
                self.router = {"output": output, "outputs": _parse_outputs(output)}
                continue
            outputs = _parse_outputs(output)
            versions = [
                o["id"]["panel"]
                for o in outputs
                if isinstance(o["id"], dict) and o["id"].get("type") == "mc-version"
            ]
            ticks = [i for i in inputs if isinstance(i["id"], dict) and "panel" in i["id"]]
            if len(versions) == 1 and ticks and ticks[0]["id"].get("type") == "mc-tick":
                state = [
                    {"id": _component_id(s["id"]), "property": s["property"]}
                    for s in dependency["state"]
                ]
                self.panels[versions[0]] = PanelCallback(
                    versions[0], output, outputs, inputs, state
                )
        if self.router is None:
            raise AssertionError("the pages router callback is not registered")

    def router_body(self, path: str, search: str = "") -> dict[str, Any]:
        assert self.router is not None
        return {
            "output": self.router["output"],
            "outputs": self.router["outputs"],
            "inputs": [
                {"id": ROUTER_INPUT, "property": "pathname", "value": path},
                {"id": ROUTER_INPUT, "property": "search", "value": search},
            ],
            "state": [],
            "changedPropIds": [f"{ROUTER_INPUT}.pathname"],
        }

    def panels_in(self, rendered: Any) -> list[PanelCallback]:
        """The panels whose tick components appear in a rendered page layout."""
        text = json.dumps(rendered)
        return [
            callback
            for name, callback in self.panels.items()
            if f'"panel": "{name}", "type": "mc-tick"' in text
            or f'"type": "mc-tick", "panel": "{name}"' in text
        ]


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

    def _open(self, path: str, search: str) -> tuple[list[PanelCallback], dict[str, str | None]]:
        self._send("page", "GET", path + search, headers={"Accept": "text/html"})
        self._send("layout", "GET", "/_dash-layout")
        router_body = self.site.router_body(path, search)
        routed = self._send("router", "POST", CALLBACK_PATH, json=router_body)
        if routed is None or routed.status_code != 200:
            return [], {}
        rendered = routed.json().get("response", {})
        panels = self.site.panels_in(rendered)
        view_state = _view_state_of(rendered)
        self._view_state = view_state
        versions: dict[str, str | None] = {}
        for callback in panels:
            versions[callback.panel] = self._poll(callback, None, "first")
        return panels, versions

    def _poll(self, callback: PanelCallback, version: str | None, kind: str) -> str | None:
        body = callback.body(version, self.client_id, self._view_state)
        answer = self._send(kind, "POST", CALLBACK_PATH, json=body)
        if answer is None or answer.status_code != 200:
            return version
        try:
            outputs = answer.json()["response"]
        except (ValueError, KeyError):
            return version
        status = outputs.get(callback.status_key, {}).get("children")
        if status:
            last = self.samples[-1]
            self.samples[-1] = Sample(
                last.at, last.kind, last.seconds, last.status, last.attempts, str(status), True
            )
        new_version = outputs.get(callback.version_key, {}).get("data")
        return new_version if new_version is not None else version

    def run(self) -> None:
        # Start at a random page and phase, so operators do not poll in lock step.
        self.stop.wait(self._random.uniform(0, self.refresh_seconds))
        start = self._random.randrange(len(self.pages))
        for path, search in itertools.islice(itertools.cycle(self.pages), start, None):
            if self.stop.is_set():
                return
            panels, versions = self._open(path, search)
            for _ in range(self.ticks_per_page):
                if self.stop.wait(self.refresh_seconds):
                    return
                for callback in panels:
                    versions[callback.panel] = self._poll(
                        callback, versions.get(callback.panel), "poll"
                    )

    _view_state: Any = None


def _view_state_of(rendered: dict[str, Any]) -> Any:
    """The page's ``mc-state`` store data, as the router wrote it into the layout."""
    found: list[Any] = []

    def walk(node: Any) -> None:
        if found:
            return
        if isinstance(node, dict):
            props = node.get("props")
            if isinstance(props, dict) and props.get("id") == "mc-state":
                found.append(props.get("data"))
                return
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(rendered)
    return found[0] if found else None


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
