"""The panel poll: one request per browser tab per tick, ``POST /poll``.

The page sends the data version each of its panels shows::

    {"tab": "<tab id>", "state": <the page's view state>, "panels": {"<panel>": "<version>"}}

and the server answers which panels have something new. An unchanged tick is ``204 No
Content`` with no body; otherwise ``200`` with the lists that are not empty::

    {"changed": ["overview-kpis"], "forbidden": ["customer-trend"], "unknown": ["gone"]}

The page then fires only the changed panels' Dash callbacks (it sets their ``mc-tick``), and
stops asking about forbidden and unknown panels. Each panel's check is its own Dash callback
run in ``version_check_only`` mode, so the query a panel polls is the query it shows. Per
panel and in this order: the user's role (``auth.guard.role_needed_for``, the same rules
that refuse the panel's Dash callback) before anything about its data, then the refresh
floor per (tab, panel) (shared by every worker through Redis when the app has it), then the
version.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from dash import no_update
from flask import Flask, Response, jsonify, request

from auth.context import audit_as, current_user, json_error
from auth.guard import PANEL_POLL_PATH, role_needed_for
from dashboard.components.poll import PollFloor, version_check_only

log = logging.getLogger(__name__)

# A page has about a dozen panels; anything far beyond that is not a page's poll.
MAX_PANELS = 64
MAX_TEXT = 256
# A fleet panel's version joins one version per date: 90 days of them pass 1.6 KB.
MAX_VERSION_TEXT = 8192

# (version shown, tab id, view state) -> whether the panel has something new to show.
PanelCheck = Callable[[str | None, str, Any], bool]


def callback_check(panel: str, function: Callable[..., tuple]) -> PanelCheck:
    """A panel's check from its Dash callback ``function(tick, shown, tab, state)``: the
    callback runs with ``PanelRunner.answer`` only comparing versions."""

    def check(shown: str | None, tab: str, state: Any) -> bool:
        try:
            with version_check_only():
                outputs = function(None, shown, tab, state)
        except Exception:
            # The callback itself shows the failure on the panel: let it run.
            log.exception("panel %s version check failed", panel)
            return True
        return not all(value is no_update for value in outputs)

    return check


class PanelChecks:
    """Every panel's check, by panel id: the panels the pages registered."""

    def __init__(self) -> None:
        self._checks: dict[str, PanelCheck] = {}

    @classmethod
    def of(cls, server: Flask) -> PanelChecks:
        checks = server.extensions.get("mc_panel_checks")
        if checks is None:
            checks = server.extensions["mc_panel_checks"] = cls()
        return checks

    def add(self, panel: str, check: PanelCheck) -> None:
        if panel in self._checks:
            raise ValueError(f"panel {panel!r} is registered twice")
        self._checks[panel] = check

    def get(self, panel: str) -> PanelCheck | None:
        return self._checks.get(panel)

    def __contains__(self, panel: str) -> bool:
        return panel in self._checks


def _parse(body: object) -> tuple[str, Any, dict[str, str | None]] | None:
    if not isinstance(body, dict):
        return None
    tab, panels, state = body.get("tab"), body.get("panels"), body.get("state")
    if not isinstance(tab, str) or not 0 < len(tab) <= MAX_TEXT:
        return None
    if not isinstance(panels, dict) or len(panels) > MAX_PANELS:
        return None
    for name, version in panels.items():
        if len(name) > MAX_TEXT or not (version is None or isinstance(version, str)):
            return None
        if version is not None and len(version) > MAX_VERSION_TEXT:
            return None
    if state is not None and not isinstance(state, dict):
        return None
    return tab, state, panels


def no_content() -> Response:
    """The unchanged tick: status line and the few headers every response needs."""
    response = Response(status=204)
    del response.headers["Content-Type"]
    response.headers["Cache-Control"] = "no-store"
    return response


def register_panel_poll(server: Flask, floor: PollFloor) -> None:
    """Add ``POST /poll``, answering from the panels in ``PanelChecks.of(server)``."""
    checks = PanelChecks.of(server)

    @server.post(PANEL_POLL_PATH)
    def panel_poll() -> Response:
        parsed = _parse(request.get_json(silent=True))
        if parsed is None:
            return json_error(400, "A poll is {tab, state, panels: {panel: version}}.")
        tab, state, panels = parsed
        user = current_user()
        changed: list[str] = []
        forbidden: list[str] = []
        unknown: list[str] = []
        for panel, shown in panels.items():
            check = checks.get(panel)
            if check is None:
                unknown.append(panel)
                continue
            needed = role_needed_for([panel])
            if needed is not None and (user is None or not user.can(needed)):
                forbidden.append(panel)
                continue
            # Inside the floor a panel has nothing new yet, whatever its data did.
            if floor.allow(tab, f"poll:{panel}") and check(shown, tab, state):
                changed.append(panel)
        if forbidden:
            audit_as(user, "refused", what=f"panel poll of {sorted(forbidden)}")
        if not (changed or forbidden or unknown):
            return no_content()
        answer = {"changed": changed, "forbidden": forbidden, "unknown": unknown}
        response = jsonify({name: panels for name, panels in answer.items() if panels})
        response.headers["Cache-Control"] = "no-store"
        return response
