"""What a browser tab on a dashboard page sends, emulated: one model for every load tool.

Mission Control's pages (``PageTraffic`` and ``Tab``): once a page has settled, a tab sends
one ``POST /poll`` per tick with its tab id, view state and the data version each panel
shows. A 204 means nothing new. A 200 names the ``changed`` panels, whose Dash callbacks the
tab then posts exactly as dash-renderer does (new versions come back in their answers), and
the ``forbidden`` and ``unknown`` ones, which the tab stops asking about. The requests come
from a recording of headless Chromium on the page (``devtools.recording``), replayed with
each tab's own id, versions and tick time; or, for tools that run without Chromium (the load
tests), they are learnt from the app's ``/_dash-dependencies`` and the pages router's
answer, which builds the same bodies (``tests/browser/test_operator_replay.py`` compares
the two).

The naive baseline (``PageModel`` with ``app="naive"``): a Dash app whose ``Interval``
fires every panel's callback at every tick, so a tab posts each panel's callback per tick.
``PageModel`` also keeps the per-panel form of Mission Control's callbacks for in-process
tools (the cache section) that post them directly.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

UPDATE_PATH = "/_dash-update-component"
# The pages router's location: its pathname and search select the page's layout.
ROUTER_INPUT = "_pages_location"


def _id_text(component_id: Any) -> str:
    if isinstance(component_id, dict):
        return json.dumps(component_id, sort_keys=True, separators=(",", ":"))
    return str(component_id)


def _parse_id(text: str) -> Any:
    return json.loads(text) if text.startswith("{") else text


def _outputs(output: str) -> list[dict[str, Any]]:
    """``..id.prop...id.prop..`` (or one ``id.prop``) as the renderer's ``outputs`` list."""
    text = output[2:-2] if output.startswith("..") else output
    outputs = []
    for part in text.split("..."):
        component, _, prop = part.rpartition(".")
        outputs.append({"id": _parse_id(component), "property": prop.split("@")[0]})
    return outputs


def callback_body(
    dependency: dict[str, Any],
    inputs: list[tuple[Any, str, Any]],
    state_values: dict[tuple[str, str], Any],
    *,
    changed: bool,
) -> dict[str, Any]:
    """The JSON dash-renderer posts for one callback; a value the page lacks is left out."""
    outputs = _outputs(dependency["output"])
    changed_ids = [f"{_id_text(i)}.{p}" for i, p, _ in inputs] if changed else []
    body: dict[str, Any] = {
        "output": dependency["output"],
        "outputs": outputs[0] if len(outputs) == 1 else outputs,
        "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
        "changedPropIds": changed_ids,
        "parsedChangedPropsIds": [_parse_id(c.rpartition(".")[0]) for c in changed_ids],
    }
    state = []
    for item in dependency.get("state", []):
        entry: dict[str, Any] = {"id": _parse_id(item["id"]), "property": item["property"]}
        value = state_values.get((item["id"], item["property"]))
        if value is not None:
            entry["value"] = value
        state.append(entry)
    if state:
        body["state"] = state
    return body


def _components(tree: Any) -> Iterator[dict[str, Any]]:
    """Every component in a Dash layout tree (dicts with ``props``)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "props" in node and "type" in node:
                yield node
                stack.extend(node["props"].values())
            else:
                stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


@dataclass
class Panel:
    """One panel's poll: how to build its body and what version it holds."""

    name: str
    dependency: dict[str, Any]
    version_id: str | None  # the panel's version store (ours); None for the naive app
    held: Any = None

    def body(self, tick: int, client_id: str, state: dict[str, Any], trigger: tuple) -> bytes:
        values = {("mc-client", "data"): client_id, ("mc-state", "data"): state.get("mc-state")}
        values[("url", "search")] = state.get("search")
        if self.version_id is not None:
            values[(self.version_id, "data")] = self.held
        component, prop = trigger
        first = tick == 0
        inputs = [(_parse_id(component), prop, None if first and prop == "n_intervals" else tick)]
        body = callback_body(self.dependency, inputs, values, changed=not first)
        return json.dumps(body, separators=(",", ":")).encode()

    def remember(self, status: int, body: bytes) -> bool:
        """Keep the version a 200 answer carries, as the page's version store does; a 204
        leaves the panel as it is. True when the panel took a new version."""
        if self.version_id is None or status != 200:
            return False
        with contextlib.suppress(ValueError, KeyError, TypeError):
            version = json.loads(body)["response"][self.version_id]["data"]
            if version is not None and version != self.held:
                self.held = version
                return True
        return False

    def status_message(self, body: bytes) -> str:
        """The panel's status line in a 200 answer: set when the panel reports a problem."""
        if self.version_id is None:
            return ""
        status_id = self.version_id.replace('"mc-version"', '"mc-status"')
        with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
            return str(json.loads(body)["response"][status_id]["children"] or "")
        return ""


@dataclass(frozen=True)
class PageSpec:
    """A page as an operator opens it: the app flavour, path and query string."""

    label: str
    app: str  # "ours" or "naive"
    path: str
    search: str = ""

    @property
    def url_path(self) -> str:
        return self.path + self.search


class PageModel:
    """Learns a page's panels once (dependencies + page content) and builds bodies from them."""

    def __init__(
        self, spec: PageSpec, dependencies: list[dict], content: Any, render: bytes
    ) -> None:
        self.spec = spec
        self.render = render  # the page-content callback body
        self.state: dict[str, Any] = {"search": spec.search}
        if spec.app == "ours":
            ticks = {}
            for component in _components(content):
                component_id = component["props"].get("id")
                if isinstance(component_id, dict) and component_id.get("type") == "mc-tick":
                    ticks[_id_text(component_id)] = component_id["panel"]
                if component_id == "mc-state":
                    self.state["mc-state"] = component["props"].get("data")
            self.panels = [
                (name, dep, f'{{"panel":"{name}","type":"mc-version"}}')
                for dep in dependencies
                if not dep.get("clientside_function")
                for tick_id, name in ticks.items()
                if any(i["id"] == tick_id for i in dep["inputs"])
            ]
        else:
            self.panels = [
                (dep["output"].partition(".")[0], dep, None)
                for dep in dependencies
                if any(i["id"] == "poll" for i in dep["inputs"])
            ]
            rendered = {
                _id_text(c["props"].get("id")) for c in _components(content) if "id" in c["props"]
            }
            self.panels = [p for p in self.panels if p[0] in rendered]
        if not self.panels:
            raise RuntimeError(f"no panels found on {spec.label}")

    def new_panels(self) -> list[Panel]:
        return [Panel(name, dep, version_id) for name, dep, version_id in self.panels]

    def trigger_for(self, panel: Panel) -> tuple[str, str]:
        """The input whose change sends a poll: the panel's tick store, or the naive Interval."""
        if self.spec.app == "ours":
            return f'{{"panel":"{panel.name}","type":"mc-tick"}}', "data"
        return "poll", "n_intervals"


def render_body(spec: PageSpec, dependencies: list[dict]) -> bytes:
    """The page-content callback the renderer posts first (pages router or a Location one)."""
    for dep in dependencies:
        ids = {i["id"] for i in dep["inputs"]}
        if ROUTER_INPUT in ids or (spec.app == "naive" and dep["output"].startswith("page.")):
            values = {
                (ROUTER_INPUT, "pathname"): spec.path,
                (ROUTER_INPUT, "search"): spec.search,
                ("url", "pathname"): spec.path,
                ("url", "search"): spec.search,
            }
            inputs = [
                (i["id"], i["property"], values.get((i["id"], i["property"])))
                for i in dep["inputs"]
            ]
            body = callback_body(dep, inputs, values, changed=True)
            return json.dumps(body, separators=(",", ":")).encode()
    raise RuntimeError("no page-content callback in the dependencies")


def page_content(status: int, body: bytes) -> Any:
    """The rendered page layout from the page-content callback's answer."""
    if status != 200:
        raise RuntimeError(f"page render answered {status}: {body[:300]!r}")
    return json.loads(body)["response"]


# ---- Mission Control's pages: one POST /poll per tab per tick -----------------------------------

POLL_PATH = "/poll"
CLIENT_STORE = "mc-client"
STATE_STORE = "mc-state"
# Placeholders in a serialised body, replaced per request (JSON strings that no body holds).
_TAB, _TICK, _VERSION = "\u0000tab\u0000", "\u0000tick\u0000", "\u0000version\u0000"
_HOLES = {json.dumps(mark): mark for mark in (_TAB, _TICK, _VERSION)}


@dataclass(frozen=True)
class Request:
    """One HTTP request of a tab: method, path with query, JSON body bytes (or None)."""

    method: str
    path: str
    body: bytes | None = None


class _Template:
    """A JSON body serialised once, with holes for the tab id, the tick time and a version."""

    def __init__(self, body: Any) -> None:
        text = json.dumps(body, separators=(",", ":"))
        self.parts: list[str | None] = []  # text, or None where a hole is
        self.holes: list[str] = []
        rest = text
        while True:
            found = [(rest.find(hole), hole) for hole in _HOLES if hole in rest]
            if not found:
                self.parts.append(rest)
                break
            at, hole = min(found)
            self.parts.append(rest[:at])
            self.holes.append(_HOLES[hole])
            rest = rest[at + len(hole) :]

    def fill(self, tab: str, tick: int, version: str | None) -> bytes:
        values = {_TAB: json.dumps(tab), _TICK: str(tick), _VERSION: json.dumps(version)}
        out = [self.parts[0]]
        for hole, text in zip(self.holes, self.parts[1:], strict=True):
            out.append(values[hole])
            out.append(text)  # type: ignore[arg-type]
        return "".join(out).encode()


def _panel_of(component_id: Any, kind: str | None = None) -> str | None:
    if not isinstance(component_id, dict) or "panel" not in component_id:
        return None
    return component_id["panel"] if kind in (None, component_id.get("type")) else None


def refresh_template(body: dict[str, Any]) -> dict[str, Any]:
    """A panel callback's body with holes where a tab puts its own values: the tick store's
    value, the panel's version and the tab id (``mc-client``)."""
    template = json.loads(json.dumps(body))
    for item in [*template.get("inputs", []), *template.get("state", [])]:
        if not isinstance(item, dict):
            continue
        component = item.get("id")
        if _panel_of(component, "mc-tick") and item.get("property") == "data":
            item["value"] = _TICK
        elif _panel_of(component, "mc-version") and item.get("property") == "data":
            item["value"] = _VERSION
        elif component == CLIENT_STORE:
            item["value"] = _TAB
    return template


def _version_key(panel: str) -> str:
    return json.dumps({"panel": panel, "type": "mc-version"}, separators=(",", ":"))


class PageTraffic:
    """What a settled page sends: its poll, and per panel the requests a change sets off."""

    def __init__(
        self,
        url_path: str,
        poll_body: dict[str, Any],
        refreshes: dict[str, list[tuple[str, dict[str, Any]]]],
        load: list[Request] | None = None,
    ) -> None:
        self.url_path = url_path
        self.state = poll_body.get("state")
        # A new tab starts with the versions the recorded page showed last: any that moved
        # since are reported changed at its first tick, as for a tab left open meanwhile.
        self.versions: dict[str, str | None] = dict(poll_body["panels"])
        self.refreshes = {
            panel: [(path, refresh_template(body)) for path, body in requests]
            for panel, requests in refreshes.items()
        }
        self._templates = {
            panel: [(path, _Template(body)) for path, body in requests]
            for panel, requests in self.refreshes.items()
        }
        self.load = load or []

    @property
    def panels(self) -> list[str]:
        return list(self.versions)

    def poll_request(self, tab: str, versions: dict[str, str | None]) -> Request:
        body = {"tab": tab, "state": self.state, "panels": versions}
        return Request("POST", POLL_PATH, json.dumps(body, separators=(",", ":")).encode())

    def refresh_requests(self, panel: str, tab: str, tick: int, version: str | None) -> list:
        return [
            Request("POST", path, template.fill(tab, tick, version))
            for path, template in self._templates.get(panel, [])
        ]

    def new_tab(self, tab: str | None = None) -> Tab:
        return Tab(self, tab or uuid.uuid4().hex)

    # -- sources ----------------------------------------------------------------------------

    @classmethod
    def from_recording(cls, recording: Any, learned: PageTraffic | None = None) -> PageTraffic:
        """From a ``devtools.recording.PageRecording``: the last tick's poll, and for each
        panel the requests of the last tick in which its callback ran (its own callback and
        any callback its answer set off, e.g. a grid's export link). A panel whose data did
        not move while recording takes its callback from ``learned``."""
        refreshes: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        if learned is not None:
            refreshes.update(learned.refreshes)
        for tick in recording.ticks:
            requests = tick[1:]
            seen_in_tick: dict[str, list[tuple[str, dict[str, Any]]]] = {}
            for entry in requests:
                if not isinstance(entry.body, dict):
                    continue
                inputs = entry.body.get("inputs") or [{}]
                panel = _panel_of(inputs[0].get("id"), "mc-tick")
                if panel is not None:
                    seen_in_tick[panel] = [(entry.path, entry.body)]
                    continue
                # A callback set off by a panel's answer (its version or content changed).
                for item in entry.body.get("inputs", []):
                    owner = _panel_of(item.get("id"))
                    if owner in seen_in_tick:
                        seen_in_tick[owner].append((entry.path, entry.body))
                        break
            refreshes.update(seen_in_tick)
        polls = [tick[0] for tick in recording.ticks]
        if not polls:
            raise RuntimeError(f"{recording.url_path}: no tick recorded")
        load = [
            Request(
                entry.method,
                entry.path,
                None if entry.body is None else json.dumps(entry.body).encode(),
            )
            for entry in recording.load
        ]
        return cls(recording.url_path, polls[-1].body, refreshes, load)

    @classmethod
    def learned(
        cls, url_path: str, dependencies: list[dict[str, Any]], content: Any
    ) -> PageTraffic:
        """From the app's dependencies and the page's layout (the router's answer): the
        bodies dash-renderer builds, without a browser."""
        ticks: list[str] = []
        state = None
        # In layout order, as the page's pattern-matching state lists its panels.
        for component in reversed(list(_components(content))):
            component_id = component["props"].get("id")
            panel = _panel_of(component_id, "mc-tick")
            if panel is not None:
                ticks.append(panel)
            if component_id == STATE_STORE:
                state = component["props"].get("data")
        refreshes: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        values = {(CLIENT_STORE, "data"): _TAB, (STATE_STORE, "data"): state}
        for panel in ticks:
            tick_id = _id_text({"panel": panel, "type": "mc-tick"})
            version_id = _id_text({"panel": panel, "type": "mc-version"})
            for dep in dependencies:
                if dep.get("clientside_function") or [i["id"] for i in dep["inputs"]] != [tick_id]:
                    continue
                body = callback_body(
                    dep,
                    [({"panel": panel, "type": "mc-tick"}, "data", _TICK)],
                    {**values, (version_id, "data"): _VERSION},
                    changed=True,
                )
                refreshes[panel] = [(UPDATE_PATH, body)]
        if not ticks:
            raise RuntimeError(f"no panels found on {url_path}")
        poll = {"tab": "", "state": state, "panels": dict.fromkeys(ticks)}
        return cls(url_path, poll, refreshes)


@dataclass
class Tab:
    """One browser tab on a settled page: the versions it shows, the panels it stopped
    asking about. Transport-free: the caller sends the requests and hands back answers."""

    traffic: PageTraffic
    tab: str
    versions: dict[str, str | None] = field(init=False)
    stopped: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.versions = dict(self.traffic.versions)

    def poll(self) -> Request:
        asked = {p: v for p, v in self.versions.items() if p not in self.stopped}
        return self.traffic.poll_request(self.tab, asked)

    def answer_poll(self, status: int, body: bytes) -> list[tuple[str, Request]]:
        """The refreshes a poll's answer sets off, as (panel, request) in the page's order."""
        if status != 200:
            return []
        answer = json.loads(body)
        self.stopped.update(answer.get("forbidden", []))
        self.stopped.update(answer.get("unknown", []))
        tick = int(time.time() * 1000)
        return [
            (panel, request)
            for panel in answer.get("changed", [])
            for request in self.traffic.refresh_requests(
                panel, self.tab, tick, self.versions.get(panel)
            )
        ]

    def answer_refresh(self, panel: str, status: int, body: bytes) -> bool:
        """Keep the version a panel callback's 200 carries; True when it moved."""
        if status != 200:
            return False
        with contextlib.suppress(ValueError, KeyError, TypeError):
            version = json.loads(body)["response"][_version_key(panel)]["data"]
            if version != self.versions.get(panel):
                self.versions[panel] = version
                return True
        return False
