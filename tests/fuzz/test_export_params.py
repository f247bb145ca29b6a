"""Fuzz ``GET /export/<view>.csv``: any view name, parameter, value, filter or sort.

The answer is a CSV (200) or a plain refusal (400, 404, 409, 413), never a 5xx; a served file's
name is safe to put in a header; no byte from outside the lake ever comes back, and nothing
beside the lake changes.
"""

from __future__ import annotations

import csv
import io
import json
import re
from urllib.parse import urlencode

from hypothesis import given
from hypothesis import strategies as st

from dashboard.export import EXPORT_VIEWS
from tests.fuzz.conftest import FUZZ, SECRET_MARKER, FuzzSite
from tests.fuzz.test_dash_callbacks import HOSTILE_TEXT, JSON_VALUES

SAFE_DISPOSITION = re.compile(r'attachment; filename="[A-Za-z0-9._-]+\.csv"')
VIEW_NAMES = st.sampled_from(sorted(EXPORT_VIEWS)) | HOSTILE_TEXT | st.text(max_size=20)
PARAM_NAMES = st.sampled_from(
    ["range", "customer", "day", "week", "category", "filter", "sort", "version", "limit", "path"]
)
RANGES = st.sampled_from(["7d", "30d", "90d", "today", "this-week", "2024-01-01..2024-01-31"])
FILTERS = st.dictionaries(
    st.sampled_from(["date", "customer", "app", "revenue", "orders", "minutes", "nope"]),
    st.fixed_dictionaries(
        {
            "filterType": st.sampled_from(["text", "number", "set", "date"]) | JSON_VALUES,
            "type": st.sampled_from(["contains", "equals", "inRange", "lessThan", "blank"])
            | JSON_VALUES,
            "filter": JSON_VALUES,
        },
        optional={"filterTo": JSON_VALUES, "conditions": JSON_VALUES, "operator": JSON_VALUES},
    ),
    max_size=3,
)
SORTS = st.lists(
    st.fixed_dictionaries(
        {"colId": st.text(max_size=10) | HOSTILE_TEXT, "sort": st.sampled_from(["asc", "desc"])}
    ),
    max_size=3,
)
VALUES = (
    RANGES
    | HOSTILE_TEXT
    | st.text(max_size=30)
    | FILTERS.map(json.dumps)
    | SORTS.map(json.dumps)
    | JSON_VALUES.map(json.dumps)
)


def _get(site: FuzzSite, view: str, params: list[tuple[str, str]]):
    path = "/export/" + view.replace("/", "%2F").replace("?", "%3F").replace("#", "%23") + ".csv"
    response = site.client.get(path + ("?" + urlencode(params) if params else ""))
    body = response.get_data()
    assert response.status_code < 500, (response.status_code, view, params, body[:200])
    assert SECRET_MARKER.encode() not in body
    if response.status_code == 200 and response.mimetype == "text/html":
        # Not an export route at all (e.g. an empty view name): Dash's page shell answers.
        return response
    if response.status_code == 200:
        assert response.mimetype == "text/csv", response.headers
        disposition = response.headers["Content-Disposition"]
        assert SAFE_DISPOSITION.fullmatch(disposition), disposition
        assert body.startswith(b"\xef\xbb\xbf")
    else:
        # 409: a ``version`` that is not (or no longer) the data's: refused with a link.
        assert response.status_code in (400, 404, 405, 409, 413), response.status_code
    return response


@FUZZ
@given(view=VIEW_NAMES, params=st.lists(st.tuples(PARAM_NAMES, VALUES), max_size=5))
def test_export_parameters_never_fail_the_server(
    fuzz_site: FuzzSite, view: str, params: list[tuple[str, str]]
) -> None:
    before = fuzz_site.snapshot()
    _get(fuzz_site, view, params)
    assert fuzz_site.snapshot() == before


@FUZZ
@given(
    view=st.sampled_from(["customer-sessions", "orders", "products", "fleet-daily"]),
    filter_model=FILTERS,
    sort=SORTS,
)
def test_grid_filters_and_sorts_are_applied_or_refused(
    fuzz_site: FuzzSite, view: str, filter_model: dict, sort: list
) -> None:
    day = fuzz_site.lake.end_date.isoformat()
    params = [("range", "30d"), ("filter", json.dumps(filter_model)), ("sort", json.dumps(sort))]
    if view == "customer-sessions":
        params += [("customer", "c0000001"), ("day", day)]
    response = _get(fuzz_site, view, params)
    if response.status_code == 200:
        # The header counts the rows the file holds: filtered and sorted, none lost or added.
        table = list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
        assert int(response.headers["X-Export-Rows"]) == len(table) - 1


def test_a_valid_export_still_answers_after_the_fuzzing(fuzz_site: FuzzSite) -> None:
    response = _get(fuzz_site, "fleet-daily", [("range", "7d")])
    assert response.status_code == 200
    assert int(response.headers["X-Export-Rows"]) > 0
