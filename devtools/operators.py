"""What the Dash renderer sends for a page's panels, emulated: one model for every load tool.

A page is learnt from the app's own ``/_dash-dependencies`` and the page-content callback's
answer (the pages router for the dashboard, a ``Location`` callback for the naive baseline),
so a panel added to a page is polled without changing this file. Each panel's poll carries
the data version the panel shows, as the renderer's version store holds it: an unchanged
version answers 204 and the panel keeps what it has; a 200 brings new content and the new
version. The bench (``bench/ramp.py``, over its own asyncio connections, and the cache
section, over Flask's test client) and the load tests (``tests/load/operators.py``, over
``requests``) all send the bodies built here; only the transport differs.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
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
