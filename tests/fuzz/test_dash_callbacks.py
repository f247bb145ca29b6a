"""Fuzz the Dash callback endpoint: whatever arrives, the answer is never a 5xx.

Bodies range from random bytes, through arbitrary JSON, to requests shaped exactly like the
renderer's for a real callback but carrying hostile values (wrong types, huge numbers and
strings, path escapes, unknown ids, deep nesting). Panels answer bad view state with a
degraded status; anything Dash cannot map is a 400 from ``dashboard.security``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import FUZZ, SECRET_MARKER, FuzzSite

CALLBACK = "/_dash-update-component"

HOSTILE_TEXT = st.sampled_from(
    [
        "",
        "../../outside/secret.txt",
        "..%2F..%2Foutside",
        "%2e%2e%2f%2e%2e%2f",
        "/etc/passwd",
        "c0000001/../../outside",
        "c0000001\x00",
        "c0000001\n",
        "\u202ec0000001",
        "\uff43\uff10\uff10\uff10\uff10\uff10\uff10\uff11",  # full-width look-alike
        "<script>alert(1)</script>",
        "=cmd|' /C calc'!A0",
        "9999-99-99",
        "2024-02-30",
        "0000-01-01..9999-12-31",
        "NaN",
        "x" * 70_000,
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | HOSTILE_TEXT
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
VIEW_KEYS = ("range", "start", "end", "customer", "day", "week", "category")


def _post(site: FuzzSite, data: bytes | str, content_type: str = "application/json"):
    response = site.client.post(CALLBACK, data=data, content_type=content_type)
    body = response.get_data(as_text=True)
    assert response.status_code < 500, (response.status_code, body[:300])
    assert SECRET_MARKER not in body
    return response


@pytest.fixture(scope="module", autouse=True)
def surroundings_before(fuzz_site: FuzzSite) -> dict[str, tuple[int, int]]:
    """The files beside the lake before this module's first request (autouse: taken first)."""
    return fuzz_site.snapshot()


@pytest.fixture(scope="module")
def dependencies(fuzz_site: FuzzSite) -> list[dict[str, Any]]:
    found = fuzz_site.client.get("/_dash-dependencies").get_json()
    server_side = [d for d in found if not d.get("clientside_function")]
    assert len(server_side) >= 20, "the app's callbacks were not found"
    return server_side


def _concrete_id(spec_id: Any, filler: Any) -> Any:
    """A request id for a registered one: pattern wildcards get ``filler``."""
    if isinstance(spec_id, str) and spec_id.startswith("{"):
        pattern = json.loads(spec_id)
        return {
            key: filler if value in (["MATCH"], ["ALL"], ["ALLSMALLER"]) else value
            for key, value in pattern.items()
        }
    return spec_id


def _outputs(output: str) -> list[dict[str, Any]] | dict[str, Any]:
    text = output[2:-2] if output.startswith("..") else output
    parts = []
    for part in text.split("..."):
        component, _, prop = part.rpartition(".")
        parts.append({"id": _concrete_id(component, "x"), "property": prop.split("@")[0]})
    return parts if output.startswith("..") else parts[0]


def _shaped_body(dependency: dict[str, Any], values: list[Any], filler: Any) -> dict[str, Any]:
    entries = [*dependency["inputs"], *dependency["state"]]
    items = [
        {"id": _concrete_id(entry["id"], filler), "property": entry["property"], "value": value}
        for entry, value in zip(entries, values, strict=False)
    ]
    count = len(dependency["inputs"])
    return {
        "output": dependency["output"],
        "outputs": _outputs(dependency["output"]),
        "inputs": items[:count],
        "state": items[count:],
        "changedPropIds": [f"{json.dumps(i['id'])}.{i['property']}" for i in items[:count]],
    }


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes_are_refused_cleanly(fuzz_site: FuzzSite, data: bytes) -> None:
    assert _post(fuzz_site, data).status_code in (400, 413, 415)


@FUZZ
@given(JSON_VALUES)
def test_arbitrary_json_is_never_a_server_error(fuzz_site: FuzzSite, body: Any) -> None:
    _post(fuzz_site, json.dumps(body))


@FUZZ
@given(
    st.sampled_from(["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]),
    JSON_VALUES,
)
def test_other_content_types_are_refused(fuzz_site: FuzzSite, content_type: str, body: Any) -> None:
    assert _post(fuzz_site, json.dumps(body), content_type).status_code in (400, 415)


@pytest.mark.parametrize("depth", [65, 2_000, 200_000])
def test_deep_nesting_is_a_400(fuzz_site: FuzzSite, depth: int) -> None:
    assert _post(fuzz_site, "[" * depth + "]" * depth).status_code == 400
    nested = '{"output": "x", "inputs": ' + "[" * depth + "]" * depth + "}"
    assert _post(fuzz_site, nested).status_code == 400


def test_a_body_over_the_limit_is_a_413(fuzz_site: FuzzSite) -> None:
    huge = json.dumps({"output": "x", "inputs": [{"value": "a" * (3 * 2**20)}]})
    assert _post(fuzz_site, huge).status_code == 413


@FUZZ
@given(data=st.data())
def test_real_callbacks_with_hostile_values_never_fail(
    fuzz_site: FuzzSite, dependencies: list[dict[str, Any]], data: st.DataObject
) -> None:
    dependency = data.draw(st.sampled_from(dependencies), label="callback")
    count = len(dependency["inputs"]) + len(dependency["state"])
    values = data.draw(st.lists(JSON_VALUES, min_size=count, max_size=count), label="values")
    filler = data.draw(SCALARS, label="wildcard id value")
    body = _shaped_body(dependency, values, filler)
    # Now and then break the shape too: a missing, extra or retyped part.
    mutation = data.draw(st.sampled_from(["none", "drop", "retype", "extra", "truncate"]))
    key = data.draw(st.sampled_from(["output", "outputs", "inputs", "state", "changedPropIds"]))
    if mutation == "drop":
        body.pop(key)
    elif mutation == "retype":
        body[key] = data.draw(JSON_VALUES, label="retyped")
    elif mutation == "extra":
        body[key + "_"] = data.draw(JSON_VALUES, label="extra")
    elif mutation == "truncate" and isinstance(body.get(key), list) and body[key]:
        body[key] = body[key][:-1]
    _post(fuzz_site, json.dumps(body))


@FUZZ
@given(
    st.sampled_from(["overview-kpis", "fleet-activity", "customer-trend", "customer-sessions"]),
    st.dictionaries(st.sampled_from(VIEW_KEYS), JSON_VALUES | HOSTILE_TEXT, max_size=7),
    st.one_of(st.none(), HOSTILE_TEXT, JSON_VALUES),
)
def test_panels_answer_a_tampered_view_with_a_degraded_status(
    fuzz_site: FuzzSite,
    dependencies: list[dict[str, Any]],
    panel: str,
    view: dict[str, Any],
    version: Any,
) -> None:
    dependency = next(d for d in dependencies if f'"panel":"{panel}"' in d["output"])
    body = _shaped_body(dependency, [1, version, "fuzz-tab", view], None)
    response = _post(fuzz_site, json.dumps(body))
    assert response.status_code in (200, 204), response.get_data(as_text=True)[:300]


def test_the_app_still_answers_normally_after_the_fuzzing(
    fuzz_site: FuzzSite,
    dependencies: list[dict[str, Any]],
    surroundings_before: dict[str, tuple[int, int]],
) -> None:
    dependency = next(d for d in dependencies if '"panel":"overview-kpis"' in d["output"])
    today = fuzz_site.lake.end_date.isoformat()
    view = {"range": "7d", "start": today, "end": today}
    body = _shaped_body(dependency, [1, None, "healthy-tab", view], None)
    response = _post(fuzz_site, json.dumps(body))
    assert response.status_code == 200
    answer = response.get_json()["response"]
    status = answer['{"panel":"overview-kpis","type":"mc-status"}']["children"]
    assert status is None, status
    assert surroundings_before  # the planted secrets are watched
    assert fuzz_site.snapshot() == surroundings_before  # and nothing beside the lake moved
