"""What headless Chromium sends on a settled dashboard page, recorded for the operator emulator.

``record_page`` opens a page in Debian's Chromium (driven by Playwright, with the flags the
browser tests use), waits until every panel has painted, then records the requests of a few
ticks: first settled ones (the page's one ``POST /poll``, answered 204), then, after
``change()`` has moved the data the page shows, the ticks whose poll names changed panels
and the Dash callbacks the page then sends. ``devtools.operators.PageTraffic`` replays them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from devtools.chromium import ALL_PAINTED, VIEWPORT, chromium

POLL_PATH = "/poll"
UPDATE_PATH = "/_dash-update-component"


@dataclass
class RecordedRequest:
    """One request as the page sent it: method, path with query, JSON body (None: no body),
    and the answer's status (0 when none came)."""

    method: str
    path: str
    body: Any
    status: int = 0
    answer: Any = None  # the JSON answer of a /poll (None for a 204 or another request)


@dataclass
class PageRecording:
    """A page's load and the ticks recorded after it settled."""

    url_path: str
    load: list[RecordedRequest] = field(default_factory=list)
    # Each tick: its /poll first, then the Dash callbacks its answer set off.
    ticks: list[list[RecordedRequest]] = field(default_factory=list)

    def as_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> PageRecording:
        data = json.loads(text)
        return cls(
            data["url_path"],
            [RecordedRequest(**item) for item in data["load"]],
            [[RecordedRequest(**item) for item in tick] for tick in data["ticks"]],
        )


def _recorded(request: Any) -> RecordedRequest | None:
    if request.resource_type not in ("document", "fetch", "xhr"):
        return None
    parts = urlsplit(request.url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    if path.startswith("/_dash-component-suites") or path.startswith("/assets"):
        return None
    body = None
    if request.post_data:
        try:
            body = json.loads(request.post_data)
        except ValueError:
            body = request.post_data
    return RecordedRequest(request.method, path, body)


def _answer(request: Any, entry: RecordedRequest) -> None:
    response = request.response()
    if response is None:
        return
    entry.status = response.status
    if entry.path == POLL_PATH and response.status == 200:
        entry.answer = json.loads(response.body())


def record_page(
    base_url: str,
    url_path: str,
    *,
    change: Callable[[], None],
    settled_ticks: int = 2,
    changed_ticks_max: int = 6,
    timeout_s: float = 90.0,
    browser: Any | None = None,
) -> PageRecording:
    """Record ``url_path`` in headless Chromium: the load, ``settled_ticks`` ticks with the
    data standing still, then ``change()`` and the ticks until every panel of the page has
    sent its Dash callback again (at most ``changed_ticks_max``).

    ``browser``: a Playwright browser already running in this thread (Playwright's sync API
    runs one at a time); without it, one is launched for the recording."""
    from playwright.sync_api import sync_playwright

    seen: list[tuple[Any, RecordedRequest]] = []
    page: Any = None

    def on_request(request: Any) -> None:
        entry = _recorded(request)
        if entry is not None:
            seen.append((request, entry))

    def polls() -> list[int]:
        return [n for n, (_, entry) in enumerate(seen) if entry.path == POLL_PATH]

    def wait_until(condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url_path}: no {what} within {timeout_s:.0f} s")
            page.wait_for_timeout(100)

    def answered(index: int) -> bool:
        request = seen[index][0]
        return request.response() is not None

    def record(browser: Any) -> None:
        nonlocal page
        page = browser.new_page(viewport=VIEWPORT)
        try:
            page.on("request", on_request)
            page.goto(base_url.rstrip("/") + url_path)
            page.wait_for_function(ALL_PAINTED, timeout=timeout_s * 1000)
            # Settled: the first poll after every panel painted starts the ticks.
            wait_until(lambda: len(polls()) >= 1, "poll")
            wait_until(lambda: len(polls()) >= 1 + settled_ticks, "settled ticks")
            change()
            panels = set(
                page.evaluate(
                    "() => Array.from(document.querySelectorAll('.mc-panel'))"
                    ".map(p => p.id.replace(/^panel-/, ''))"
                )
            )
            start = len(polls())

            def refreshed() -> set[str]:
                first = polls()[start - 1] if start else 0
                return {
                    _ticked_panel(entry.body)
                    for _, entry in seen[first:]
                    if entry.path == UPDATE_PATH
                } - {None}  # type: ignore[arg-type]

            deadline_ticks = start + changed_ticks_max
            wait_until(
                lambda: refreshed() >= panels or len(polls()) > deadline_ticks,
                "refresh of every panel",
            )
            # One more tick, so the last refreshes are answered and grouped.
            count = len(polls())
            wait_until(lambda: len(polls()) > count, "tick after the refreshes")
            wait_until(lambda: all(answered(n) for n in range(len(seen) - 1)), "answers")
            for request, entry in seen:
                _answer(request, entry)
        finally:
            page.close()

    if browser is not None:
        record(browser)
    else:
        with sync_playwright() as playwright, chromium(playwright) as launched:
            record(launched)
    marks = polls()
    recording = PageRecording(url_path, [entry for _, entry in seen[: marks[0]]])
    for start, end in zip(marks, [*marks[1:], None], strict=True):
        if end is None:
            break  # the last poll may still be on its way: its tick is incomplete
        recording.ticks.append([entry for _, entry in seen[start:end]])
    return recording


def _ticked_panel(body: Any) -> str | None:
    """The panel whose tick store triggered this Dash callback, if one did."""
    try:
        component = body["inputs"][0]["id"]
        return component["panel"] if component.get("type") == "mc-tick" else None
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
