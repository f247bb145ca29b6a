"""CSV export: RFC 4180 output, formula neutralisation, grid filters and sorts, limits, 400s."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass, field
from urllib.parse import quote

import pandas as pd
import pytest
from flask import Flask

from auth.guard import init_auth
from auth.settings import AuthSettings
from dashboard import export
from dashboard.components.url_state import BadParameter, parse_view_state
from dashboard.pages import revenue, screen_time
from dashboard.settings import DashboardSettings
from data_access.queries import OrdersQuery, Query
from data_access.service import NoData, Provenance, Result

TODAY = dt.date(2026, 3, 18)  # a Wednesday


def _orders() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ts": ["2026-03-16 10:00:00", "2026-03-17 09:30:00", "2026-03-17 11:00:00", None],
            "order_id": ["o-1", "o-2", "o-3", "o-4"],
            "product_name": ["=HYPERLINK(1)", "Tea, green", 'Mug "XL"', "Kettle"],
            "category": ["Home", "Food", "Home", None],
            "quantity": [1, 3, 2, 5],
            "amount": [-5.0, 12.5, float("nan"), 40.0],
        }
    )


@dataclass
class FakeData:
    frame: pd.DataFrame
    queries: list[Query] = field(default_factory=list)
    fail: bool = False

    def fetch(self, query: Query) -> Result:
        self.queries.append(query)
        if self.fail:
            raise NoData("lake unreachable and no earlier data")
        return Result(self.frame.copy(), Provenance("lake", 0.0, "v1"))


@dataclass
class FakeServices:
    data: FakeData
    settings: DashboardSettings


def _client(frame: pd.DataFrame, *, row_limit: int = 1000, fail: bool = False):
    services = FakeServices(
        FakeData(frame, fail=fail), DashboardSettings(export_row_limit=row_limit)
    )
    app = Flask(__name__)
    init_auth(app, AuthSettings(), None)  # dev sign-in: the test client is on loopback
    app.register_blueprint(export.blueprint(services))
    return app.test_client(), services


def _rows(body: bytes) -> list[list[str]]:
    text = body.decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:], newline="")))


# ---- the CSV itself ---------------------------------------------------------------------------


def test_csv_is_rfc4180_with_crlf_quoting_and_a_bom():
    frame = pd.DataFrame({"name": ['Mug "XL"', "Tea, green", "two\nlines"], "n": [1, 2, 3]})
    text = "".join(export.csv_chunks(frame))
    assert text.startswith("\ufeffname,n\r\n")
    assert '"Mug ""XL""",1\r\n' in text
    assert '"Tea, green",2\r\n' in text
    assert '"two\nlines",3\r\n' in text
    assert text.endswith("\r\n")
    assert list(csv.reader(io.StringIO(text[1:], newline=""))) == [
        ["name", "n"],
        ['Mug "XL"', "1"],
        ["Tea, green", "2"],
        ["two\nlines", "3"],
    ]


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("=SUM(A1:A9)", "'=SUM(A1:A9)"),
        ("+1", "'+1"),
        ("-2+3", "'-2+3"),
        ("@cmd", "'@cmd"),
        ("\tindent", "'\tindent"),
        ("\rreturn", "'\rreturn"),
        ("plain", "plain"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_text_that_starts_like_a_formula_is_neutralised(value, written):
    assert export.neutralise(value) == written


def test_real_numbers_stay_numbers_and_missing_values_are_empty():
    frame = pd.DataFrame({"avg_pickups": [-5.0, 0.5, float("nan")], "note": ["-5", None, "ok"]})
    rows = list(csv.reader(io.StringIO("".join(export.csv_chunks(frame, bom=False)))))
    assert rows == [["Avg pickups", "note"], ["-5.0", "'-5"], ["0.5", ""], ["", "ok"]]


def test_money_has_two_decimals_and_headers_are_titles_with_units():
    frame = pd.DataFrame(
        {
            "product_name": ["Kettle", "Tea", "Mug"],
            "revenue": [249, 12.5, float("nan")],
            "unit_price": pd.Series([-5.0, 0.1 + 0.2, None], dtype="object"),
            "orders": [3, 1, 0],
        }
    )
    text = "".join(export.csv_chunks(frame, bom=False))
    assert text.startswith("Product,Revenue ($),Unit price ($),Orders\r\n")
    assert list(csv.reader(io.StringIO(text)))[1:] == [
        ["Kettle", "249.00", "-5.00", "3"],
        ["Tea", "12.50", "0.30", "1"],
        ["Mug", "", "", "0"],
    ]


def _grid_header(column: dict) -> str:
    money = "$" in str(column.get("valueFormatter", ""))
    return column["headerName"] + (" ($)" if money else "")


@pytest.mark.parametrize(
    ("view_name", "columns"),
    [
        ("orders", revenue.ORDER_COLUMNS),
        ("products", revenue.PRODUCT_COLUMNS),
        ("customer-sessions", screen_time.SESSION_COLUMNS),
    ],
)
def test_a_grid_exports_under_its_own_column_titles(view_name, columns):
    titles = export.EXPORT_VIEWS[view_name].titles
    frame = pd.DataFrame({column["field"]: [] for column in columns})
    header = next(
        csv.reader(io.StringIO("".join(export.csv_chunks(frame, bom=False, titles=titles))))
    )
    assert header == [_grid_header(column) for column in columns]


def test_large_frames_stream_in_chunks():
    frame = pd.DataFrame({"n": range(export.CHUNK_ROWS * 2 + 5)})
    chunks = list(export.csv_chunks(frame))
    assert len(chunks) == 1 + 3  # header, then three chunks of rows
    assert "".join(chunks).count("\r\n") == len(frame) + 1


# ---- filter and sort models -------------------------------------------------------------------


def test_text_filters_match_case_insensitively_like_the_grid():
    frame = _orders()
    only_home = export.apply_filter_model(
        frame, {"category": {"filterType": "text", "type": "equals", "filter": "home"}}
    )
    assert list(only_home["order_id"]) == ["o-1", "o-3"]
    contains = export.apply_filter_model(
        frame, {"product_name": {"filterType": "text", "type": "contains", "filter": "TEA"}}
    )
    assert list(contains["order_id"]) == ["o-2"]
    not_home = export.apply_filter_model(
        frame, {"category": {"filterType": "text", "type": "notEqual", "filter": "Home"}}
    )
    assert list(not_home["order_id"]) == ["o-2", "o-4"]  # a blank passes a negative filter
    blank = export.apply_filter_model(frame, {"category": {"filterType": "text", "type": "blank"}})
    assert list(blank["order_id"]) == ["o-4"]


def test_number_filters_and_combined_conditions():
    frame = _orders()
    model = {
        "quantity": {
            "filterType": "number",
            "operator": "OR",
            "conditions": [
                {"type": "lessThan", "filter": 2},
                {"type": "greaterThanOrEqual", "filter": 5},
            ],
        }
    }
    assert list(export.apply_filter_model(frame, model)["order_id"]) == ["o-1", "o-4"]
    in_range = {"quantity": {"filterType": "number", "type": "inRange", "filter": 1, "filterTo": 5}}
    assert list(export.apply_filter_model(frame, in_range)["order_id"]) == ["o-2", "o-3"]
    both = {
        "quantity": {"filterType": "number", "type": "greaterThan", "filter": 1},
        "category": {"filterType": "text", "type": "startsWith", "filter": "ho"},
    }
    assert list(export.apply_filter_model(frame, both)["order_id"]) == ["o-3"]
    no_amount = {"amount": {"filterType": "number", "type": "blank"}}
    assert list(export.apply_filter_model(frame, no_amount)["order_id"]) == ["o-3"]


@pytest.mark.parametrize(
    "model",
    [
        {"nope": {"filterType": "text", "type": "contains", "filter": "x"}},
        {"category": {"filterType": "set", "values": ["Home"]}},
        {"category": {"filterType": "text", "type": "regex", "filter": ".*"}},
        {"quantity": {"filterType": "number", "type": "equals", "filter": "many"}},
        {"quantity": {"filterType": "number", "operator": "XOR", "conditions": [{}]}},
        ["not", "an", "object"],
    ],
)
def test_a_filter_model_the_grid_would_not_send_is_a_bad_parameter(model):
    with pytest.raises(BadParameter):
        export.apply_filter_model(_orders(), model)


def test_sort_applies_keys_in_priority_with_blanks_first_when_ascending():
    frame = _orders()
    by_category_then_quantity = export.apply_sort(
        frame, [{"colId": "category", "sort": "asc"}, {"colId": "quantity", "sort": "desc"}]
    )
    assert list(by_category_then_quantity["order_id"]) == ["o-4", "o-2", "o-3", "o-1"]
    newest = export.apply_sort(frame, [{"colId": "ts", "sort": "desc"}])
    assert list(newest["order_id"]) == ["o-3", "o-2", "o-1", "o-4"]
    with pytest.raises(BadParameter):
        export.apply_sort(frame, [{"colId": "ts", "sort": "sideways"}])


def test_sort_from_column_state_orders_by_sort_index():
    state = [
        {"colId": "a", "sort": None, "sortIndex": None},
        {"colId": "b", "sort": "desc", "sortIndex": 1},
        {"colId": "c", "sort": "asc", "sortIndex": 0},
    ]
    assert export.sort_from_column_state(state) == [
        {"colId": "c", "sort": "asc"},
        {"colId": "b", "sort": "desc"},
    ]


# ---- the route --------------------------------------------------------------------------------


def test_export_serves_the_filtered_sorted_rows_with_the_filters_in_the_file_name():
    client, services = _client(_orders())
    view = parse_view_state({"week": "2026-03-16", "category": "Home"}, TODAY)
    href = export.export_href(
        "orders",
        view,
        filter_model={"quantity": {"filterType": "number", "type": "greaterThan", "filter": 0}},
        sort=[{"colId": "quantity", "sort": "asc"}],
    )
    response = client.get(href)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/csv; charset=utf-8")
    assert response.is_streamed
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment; filename=")
    assert "week-2026-03-16" in disposition
    assert "category-Home" in disposition
    assert "filtered" in disposition
    rows = _rows(response.data)
    assert rows[0] == ["Time (UTC)", "Order", "Product", "Category", "Qty", "Amount ($)"]
    assert [row[1] for row in rows[1:]] == ["o-1", "o-3", "o-2", "o-4"]  # by quantity
    assert rows[1][2] == "'=HYPERLINK(1)"
    assert rows[1][5] == "-5.00"
    assert response.headers["X-Export-Rows"] == "4"
    # The week is Monday to Sunday and the category is passed on to the query.
    (query,) = services.data.queries
    assert query == OrdersQuery(dt.date(2026, 3, 16), dt.date(2026, 3, 22), "Home")


def test_an_export_over_the_row_limit_is_refused_with_the_count_and_the_limit():
    client, _ = _client(_orders(), row_limit=3)
    response = client.get("/export/orders.csv?week=2026-03-16")
    assert response.status_code == 413
    text = response.get_data(as_text=True)
    assert "4 rows" in text
    assert "limit is 3" in text
    # Filtering below the limit makes the same export possible.
    model = quote(
        json.dumps({"category": {"filterType": "text", "type": "equals", "filter": "Home"}})
    )
    narrowed = client.get(f"/export/orders.csv?week=2026-03-16&filter={model}")
    assert narrowed.status_code == 200
    assert len(_rows(narrowed.data)) == 1 + 2


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("/export/orders.csv?range=yesterday", "range"),
        ("/export/orders.csv?range=2026-02-30..2026-03-01", "range"),
        ("/export/orders.csv?range=2026-03-10..2026-03-01", "range"),
        ("/export/orders.csv?week=16-03-2026", "week"),
        ("/export/customer-trend.csv?customer=../../etc", "customer"),
        ("/export/customer-trend.csv?customer=c%00x", "customer"),
        ("/export/customer-trend.csv", "customer"),
        ("/export/customer-sessions.csv?customer=c0000001", "day"),
        ("/export/orders.csv?filter=%7Bnot%20json", "filter"),
        (
            "/export/orders.csv?sort=%5B%7B%22colId%22%3A%22nope%22%2C%22sort%22%3A%22asc%22%7D%5D",
            "nope",
        ),
        ("/export/orders.csv?week=2026-03-16&week=2026-03-09", "more than once"),
        ("/export/orders.csv?color=red", "unknown parameter"),
    ],
)
def test_bad_parameters_answer_400_with_the_reason(url, reason):
    client, _ = _client(_orders())
    response = client.get(url)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert reason in response.get_data(as_text=True)


def test_unknown_view_is_404_and_unreachable_data_is_503():
    client, _ = _client(_orders())
    assert client.get("/export/secrets.csv").status_code == 404
    down, _ = _client(_orders(), fail=True)
    response = down.get("/export/orders.csv?week=2026-03-16")
    assert response.status_code == 503
    assert "unreachable" in response.get_data(as_text=True)


def test_derived_views_export_what_the_chart_shows():
    apps = pd.DataFrame(
        {
            "app_id": ["a", "b", "c"],
            "app_name": ["A", "B", "C"],
            "category": ["Video", "Games", "Video"],
            "seconds": [10, 30, 25],
            "customer_days": [1, 1, 1],
            "sessions": [1, 1, 1],
        }
    )
    client, _ = _client(apps)
    rows = _rows(client.get("/export/fleet-categories.csv?range=7d").data)
    assert rows[0] == ["Category", "Screen time (s)", "Share (0-1)"]
    assert [(row[0], row[1]) for row in rows[1:]] == [("Video", "35"), ("Games", "30")]


def test_export_href_round_trips_through_the_route_parser():
    view = parse_view_state(
        {"range": "2026-03-01..2026-03-10", "customer": "c0000007", "day": "2026-03-05"}, TODAY
    )
    href = export.export_href("customer-sessions", view)
    assert href.startswith("/export/customer-sessions.csv?")
    client, services = _client(pd.DataFrame({"start": ["x"]}))
    assert client.get(href).status_code == 200
    (query,) = services.data.queries
    assert query.customer_id == "c0000007"
    assert query.day == dt.date(2026, 3, 5)
