"""What a fault test reads off a panel in the browser, and what it records of the traffic."""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from tests.plugins.browser import dom_id

# Badge tiers a panel shows while a store is failing, and while all is well.
TROUBLE_TIERS = ("stale", "error")
HEALTHY_TIERS = ("memory", "cache", "lake")

READ_PANEL = """(selectors) => {
    const badge = document.querySelector(selectors.badge + " .mc-badge");
    const status = document.querySelector(selectors.status);
    const content = document.querySelector(selectors.content);
    const tier = badge ? (Array.from(badge.classList).find(c => c.startsWith("mc-tier-")) || "")
        : "";
    return {
        tier: tier.replace("mc-tier-", ""),
        badge_title: badge ? badge.getAttribute("title") || "" : "",
        status: status ? status.innerText.trim() : "",
        content: content ? content.innerText.trim() : "",
    };
}"""


@dataclass(frozen=True)
class PanelView:
    tier: str
    badge_title: str
    status: str
    content: str

    @property
    def degraded(self) -> bool:
        return self.tier in TROUBLE_TIERS

    @property
    def healthy(self) -> bool:
        return self.tier in HEALTHY_TIERS and not self.status


def selectors(panel: str, content_part: str = "content") -> dict[str, str]:
    return {
        "badge": dom_id(panel, "badge"),
        "status": dom_id(panel, "status"),
        "content": dom_id(panel, content_part),
    }


def read_panel(page, panel: str, content_part: str = "content") -> PanelView:
    return PanelView(**page.evaluate(READ_PANEL, selectors(panel, content_part)))


def wait_for_panel(page, panel: str, condition, timeout_s: float, what: str) -> PanelView:
    """Until ``condition(PanelView)`` holds; fails naming ``what`` and the last view seen."""
    deadline = time.monotonic() + timeout_s
    view = read_panel(page, panel)
    while time.monotonic() < deadline:
        view = read_panel(page, panel)
        if condition(view):
            return view
        page.wait_for_timeout(250)
    raise AssertionError(f"{panel}: not {what} within {timeout_s:.0f} s; last seen {view}")


@dataclass(frozen=True)
class CallbackCall:
    started: float  # monotonic seconds when the request was sent (approximately)
    seconds: float  # from sending the request to the end of the answer
    status: int  # 0 when the request failed without an answer
    output: str


class CallbackLog:
    """Every Dash callback request a page makes: status, duration and which outputs."""

    def __init__(self, page) -> None:
        self.calls: list[CallbackCall] = []
        page.on("requestfinished", self._finished)
        page.on("requestfailed", self._failed)

    @staticmethod
    def _is_callback(request) -> bool:
        return urlsplit(request.url).path.endswith("/_dash-update-component")

    @staticmethod
    def _output(request) -> str:
        try:
            return str((request.post_data_json or {}).get("output", ""))
        except ValueError:
            return ""

    def _finished(self, request) -> None:
        if not self._is_callback(request):
            return
        response = request.response()
        timing = request.timing
        seconds = max(0.0, timing.get("responseEnd", 0.0)) / 1000
        self.calls.append(
            CallbackCall(
                time.monotonic() - seconds,
                seconds,
                response.status if response else 0,
                self._output(request),
            )
        )

    def _failed(self, request) -> None:
        # Cancelled by the page itself (a navigation away): no answer was ever due.
        if self._is_callback(request) and "ERR_ABORTED" not in (request.failure or ""):
            self.calls.append(CallbackCall(time.monotonic(), 0.0, 0, self._output(request)))

    def since(self, mark: float, panel: str | None = None) -> list[CallbackCall]:
        return [
            call
            for call in self.calls
            if call.started >= mark and (panel is None or f'"panel":"{panel}"' in call.output)
        ]

    def server_errors(self) -> list[CallbackCall]:
        return [call for call in self.calls if call.status >= 500]
