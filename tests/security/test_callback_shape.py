"""The shape check in front of Dash's callback dispatch, on a hand-written callback map."""

from __future__ import annotations

import json

import pytest

from dashboard.security import MAX_WILDCARD_ITEMS, callback_request_problem, json_depth

PANEL_TICK = '{"panel":["MATCH"],"type":"mc-tick"}'
CALLBACK_MAP = {
    "..a.children...b.data..": {
        "callback": object(),
        "inputs": [{"id": PANEL_TICK, "property": "data"}],
        "state": [{"id": "mc-client", "property": "data"}],
    },
    "total.children": {
        "callback": object(),
        "inputs": [{"id": '{"type":"row","index":["ALL"]}', "property": "value"}],
        "state": [],
    },
    "clientside.children": {"inputs": [], "state": []},  # no server function
}


def _panel_body(**changes: object) -> dict:
    body = {
        "output": "..a.children...b.data..",
        "outputs": [{"id": "a", "property": "children"}, {"id": "b", "property": "data"}],
        "inputs": [{"id": {"panel": "kpis", "type": "mc-tick"}, "property": "data", "value": 1}],
        "state": [{"id": "mc-client", "property": "data", "value": "tab"}],
        "changedPropIds": ['{"panel":"kpis","type":"mc-tick"}.data'],
    }
    body.update(changes)
    return body


def test_a_request_shaped_like_the_renderers_passes() -> None:
    assert callback_request_problem(_panel_body(), CALLBACK_MAP) is None
    rows = [{"id": {"type": "row", "index": n}, "property": "value", "value": n} for n in range(3)]
    body = {
        "output": "total.children",
        "outputs": {"id": "total", "property": "children"},
        "inputs": [rows],
        "changedPropIds": [],
    }
    assert callback_request_problem(body, CALLBACK_MAP) is None


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"output": "nope.children"}, "unknown callback output"),
        ({"output": "clientside.children"}, "unknown callback output"),
        ({"output": ["..a.children...b.data.."]}, "unknown callback output"),
        ({"outputs": {"id": "a", "property": "children"}}, "outputs do not match"),
        ({"outputs": [{"id": "a"}, {"id": "b", "property": "data"}]}, "id and a property"),
        ({"inputs": []}, "inputs do not match"),
        ({"inputs": "x"}, "inputs must be a list"),
        ({"state": None}, "state must be a list"),
        (
            {"inputs": [{"id": {"panel": "kpis", "type": "other"}, "property": "data"}]},
            "does not match",
        ),
        (
            {"inputs": [{"id": {"panel": {"$gt": ""}, "type": "mc-tick"}, "property": "data"}]},
            "does not match",
        ),
        ({"inputs": [{"id": {"panel": "kpis"}, "property": "data"}]}, "does not match"),
        ({"state": [{"id": "mc-client", "property": "value"}]}, "does not match"),
        ({"state": [["mc-client"]]}, "id and a property"),
        ({"changedPropIds": "a.data"}, "changedPropIds"),
        ({"changedPropIds": [1]}, "changedPropIds"),
    ],
)
def test_a_request_that_does_not_fit_its_callback_says_why(changes: dict, problem: str) -> None:
    found = callback_request_problem(_panel_body(**changes), CALLBACK_MAP)
    assert found is not None and problem in found, found


def test_wildcard_lists_are_bounded() -> None:
    rows = [{"id": {"type": "row", "index": 1}, "property": "value"}] * (MAX_WILDCARD_ITEMS + 1)
    body = {"output": "total.children", "outputs": {"id": "total", "property": "children"}}
    assert "list" in (callback_request_problem({**body, "inputs": [rows]}, CALLBACK_MAP) or "")
    not_a_list = {**body, "inputs": [{"id": {"type": "row", "index": 1}, "property": "value"}]}
    assert callback_request_problem(not_a_list, CALLBACK_MAP) is not None


@pytest.mark.parametrize(
    ("value", "depth"),
    [(1, 0), ([], 1), ({"a": [1, {"b": []}]}, 4), (json.loads("[" * 500 + "]" * 500), 500)],
)
def test_json_depth(value: object, depth: int) -> None:
    assert json_depth(value) == depth
