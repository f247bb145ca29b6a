"""Panel polls as dash-renderer sends them, and small sample lakes for the AWS-tier tests.

A poll is ``POST /_dash-update-component`` with the panel's four outputs (content, version,
badge, status), its tick as input and the shown version, tab id and view state as state.
The helpers build that body and read the answer; they work with a Flask test client and
with ``requests`` against a live server alike.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from typing import Any

from data_access.stores import Stores
from pipeline.generate import customer_id, customer_profile, screen_time_key, screen_time_upload

Panel = tuple[str, tuple[str, str]]  # (panel name, (content part, property))
FLEET_TILES: Panel = ("fleet-tiles", ("content", "children"))
FLEET_ACTIVITY: Panel = ("fleet-activity", ("figure", "data"))


def component_key(component_id: dict | str) -> str:
    if isinstance(component_id, dict):
        return json.dumps(component_id, sort_keys=True, separators=(",", ":"))
    return component_id


def part(panel: str, name: str) -> dict[str, str]:
    return {"panel": panel, "type": f"mc-{name}"}


def update_body(
    outputs: list[tuple[Any, str]],
    inputs: list[tuple[Any, str, Any]],
    state: Iterable[tuple[Any, str, Any]] = (),
) -> dict[str, Any]:
    names = [f"{component_key(i)}.{p}" for i, p in outputs]
    return {
        "output": names[0] if len(names) == 1 else ".." + "...".join(names) + "..",
        "outputs": [{"id": i, "property": p} for i, p in outputs],
        "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
        "state": [{"id": i, "property": p, "value": v} for i, p, v in state],
        "changedPropIds": [f"{component_key(i)}.{p}" for i, p, _ in inputs],
    }


def poll_body(
    panel: Panel, *, version: str | None, tab: str, today: dt.date, tick: int = 1
) -> dict[str, Any]:
    """One poll of ``panel`` by browser tab ``tab`` showing ``version``, default view."""
    from dashboard.components.url_state import parse_view_state

    name, (content, prop) = panel
    view = parse_view_state({}, today)
    return update_body(
        [
            (part(name, content), prop),
            (part(name, "version"), "data"),
            (part(name, "badge"), "children"),
            (part(name, "status"), "children"),
        ],
        [(part(name, "tick"), "data", tick)],
        [
            (part(name, "version"), "data", version),
            ("mc-client", "data", tab),
            ("mc-state", "data", view.to_store()),
        ],
    )


class PanelReply:
    """The four outputs of an answered poll (status 200)."""

    def __init__(self, panel: Panel, response: Mapping[str, Any]) -> None:
        name, (content, prop) = panel
        outputs = response["response"]

        def output(part_name: str, prop_name: str) -> Any:
            found = outputs.get(component_key(part(name, part_name)))
            return None if found is None else found[prop_name]

        self.content = output(content, prop)
        self.version = output("version", "data")
        self.badge = output("badge", "children")
        self.status = output("status", "children")

    @property
    def badge_class(self) -> str:
        return self.badge["props"]["className"] if self.badge else ""

    @property
    def badge_label(self) -> str:
        """The tier word on the badge: memory, cache, lake, stale or unavailable."""
        return self.badge["props"]["children"][1]["props"]["children"] if self.badge else ""

    @property
    def badge_title(self) -> str:
        return self.badge["props"].get("title", "") if self.badge else ""

    @property
    def status_text(self) -> str:
        """The panel's status line ("Degraded: ..."), empty when all is well."""
        if not self.status:
            return ""
        return "".join(
            child if isinstance(child, str) else "" for child in self.status["props"]["children"]
        )

    def content_text(self) -> str:
        return json.dumps(self.content)


def write_uploads(stores: Stores, *, customers: int, days: int, end: dt.date, seed: int) -> int:
    """Device uploads for ``customers`` x ``days`` into the raw zone, queued as S3 would
    notify them; returns how many."""
    written = 0
    for number in range(customers):
        profile = customer_profile(seed, number, end)
        for offset in range(days):
            day = end - dt.timedelta(days=offset)
            body = screen_time_upload(seed, profile, day)
            if body is not None:
                key = screen_time_key(customer_id(number), day)
                stores.lake.write_bytes(key, body)
                stores.queue.send([key])
                written += 1
    return written
