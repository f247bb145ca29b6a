"""The pure figure builders: data lands in the traces, empty input says so, dicts are JSON."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from dashboard import figures


def _apps() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "app_id": ["a.video", "a.chat", "a.game", "a.tube"],
            "app_name": ["Flix", "Chat", "Blocks", "Tube"],
            "category": ["Video", "Communication", "Games", "Video"],
            "seconds": [7200, 3600, 1800, 5400],
            "customer_days": [3, 4, 1, 2],
            "sessions": [4, 40, 3, 9],
        }
    )


def _assert_json(figure: dict) -> None:
    # What Dash sends must be plain JSON: no numpy scalars, no NaN.
    json.dumps(figure, allow_nan=False)


def test_category_split_sums_seconds_per_category_and_shares_add_to_one():
    split = figures.category_split(_apps())
    by_category = dict(zip(split["category"], split["seconds"], strict=True))
    assert by_category == {"Video": 12600, "Communication": 3600, "Games": 1800}
    assert split["seconds"].sum() == _apps()["seconds"].sum()
    assert split["share"].sum() == pytest.approx(1.0)
    assert list(split["category"]) == ["Video", "Communication", "Games"]  # largest first


def test_category_donut_shows_the_split_in_hours():
    figure = figures.category_donut(_apps())
    trace = figure["data"][0]
    values = dict(zip(trace["labels"], trace["values"], strict=True))
    assert values == {"Video": 3.5, "Communication": 1.0, "Games": 0.5}
    assert len(set(trace["marker"]["colors"])) == 3
    _assert_json(figure)


def test_top_apps_keeps_the_largest_in_order_with_category_colours():
    figure = figures.top_apps(_apps(), limit=3)
    trace = figure["data"][0]
    # Horizontal bars list bottom-up: the largest app comes last.
    assert trace["y"] == ["Chat", "Tube", "Flix"]
    assert trace["x"] == [1.0, 1.5, 2.0]
    assert "Blocks" not in trace["y"]
    colors = figures.category_colors(["Video", "Communication", "Games"])
    assert trace["marker"]["color"][-1] == colors["Video"]
    _assert_json(figure)


@pytest.mark.parametrize(
    "builder",
    [
        figures.revenue_trend,
        figures.top_products,
        figures.fleet_activity,
        figures.top_apps,
        figures.category_donut,
        figures.hourly_usage,
        figures.customer_trend,
        figures.customer_day_apps,
        figures.customer_day_hours,
        figures.weekly_revenue,
        figures.category_revenue,
    ],
)
def test_an_empty_frame_gives_a_no_data_figure(builder):
    figure = builder(pd.DataFrame())
    assert figures.is_no_data(figure)
    assert figure["data"] == []
    assert figure["layout"]["annotations"][0]["text"]
    _assert_json(figure)


def test_revenue_trend_plots_revenue_and_orders_per_day_in_date_order():
    daily = pd.DataFrame(
        {
            "day": ["2026-01-02", "2026-01-01"],
            "revenue": [20.5, 10.25],
            "orders": [3, 1],
            "visitors": [40, 30],
            "buyers": [2, 1],
            "dau": [40, 30],
            "pageviews": [100, 90],
        }
    )
    figure = figures.revenue_trend(daily)
    orders, revenue = figure["data"]
    assert revenue["x"] == ["2026-01-01", "2026-01-02"]
    assert revenue["y"] == [10.25, 20.5]
    assert orders["y"] == [1, 3]
    assert orders["yaxis"] == "y2"
    # Both series are named in a legend, and each hover line carries its unit.
    assert figure["layout"]["showlegend"] is True
    assert (revenue["name"], orders["name"]) == ("Revenue", "Orders (right axis)")
    assert revenue["hovertemplate"].startswith(figures.CURRENCY)
    assert "orders" in orders["hovertemplate"]
    _assert_json(figure)


def test_kpi_tiles_format_values_and_changes():
    kpis = pd.DataFrame(
        [
            {"metric": "revenue", "label": "Revenue", "value": 1500.0, "previous": 1000.0},
            {"metric": "orders", "label": "Orders", "value": 9.0, "previous": 12.0},
            {"metric": "conversion", "label": "Conversion", "value": 0.05, "previous": 0.0},
        ]
    )
    kpis["change"] = [0.5, -0.25, None]
    tiles = {tile["metric"]: tile for tile in figures.kpi_tiles(kpis)}
    assert tiles["revenue"]["value"] == "$1,500.00"
    assert tiles["revenue"]["change"] == "+50.0%"
    assert tiles["revenue"]["direction"] == "up"
    assert tiles["orders"]["change"] == "\u221225.0%"
    assert tiles["orders"]["direction"] == "down"
    assert tiles["conversion"]["value"] == "5.00%"
    assert tiles["conversion"]["direction"] == "none"  # no earlier period to compare with
    assert tiles["conversion"]["change"] == "no earlier data"


def test_active_user_and_active_device_labels_name_their_population():
    kpis = pd.DataFrame(
        [{"metric": "dau", "label": "Daily active users", "value": 40.0, "previous": 30.0}]
    )
    assert figures.kpi_tiles(kpis)[0]["label"] == "Shop daily active users"
    empty = pd.DataFrame(columns=["day", "active_customers", "total_seconds", "avg_pickups"])
    assert figures.fleet_tiles(empty)[0]["label"] == "Active devices (customers)"


def test_fleet_tiles_weight_averages_by_active_customers():
    daily = pd.DataFrame(
        {
            "day": ["2026-01-01", "2026-01-02"],
            "active_customers": [1, 3],
            "total_seconds": [3600, 3 * 7200],
            "avg_seconds": [3600.0, 7200.0],
            "avg_pickups": [10.0, 30.0],
        }
    )
    tiles = {tile["metric"]: tile for tile in figures.fleet_tiles(daily)}
    assert tiles["active"]["value"] == "3"  # the latest day
    # (3600 + 21600) / 4 customer-days = 6300 s = 1 h 45 min, not the plain mean of days.
    assert tiles["screen_time"]["value"] == "1 h 45 min"
    assert tiles["pickups"]["value"] == "25"
    assert tiles["customer_days"]["value"] == "4"


def test_customer_trend_highlights_the_selected_day():
    trend = pd.DataFrame(
        {
            "day": ["2026-01-01", "2026-01-02", "2026-01-03"],
            "seconds": [3600, 7200, 0],
            "sessions": [5, 6, 0],
            "pickups": [7, 8, 0],
            "notifications": [1, 2, 0],
        }
    )
    trace = figures.customer_trend(trend, "2026-01-02")["data"][0]
    assert trace["y"] == [1.0, 2.0, 0.0]
    colors = trace["marker"]["color"]
    assert colors[1] == figures.ACCENT
    assert colors[0] == colors[2] != figures.ACCENT


def _day_rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "hour": [8, 8, 21, 23],
            "app_id": ["a", "b", "a", "c"],
            "app_name": ["Chat", "Tube", "Chat", "Blocks"],
            "category": ["Communication", "Video", "Communication", "Games"],
            "seconds": [600, 1200, 300, 60],
            "sessions": [3, 1, 2, 1],
            "pickups": [3, 1, 2, 1],
            "notifications": [5, 0, 1, 0],
        }
    )


def test_customer_day_apps_sums_an_app_over_hours():
    trace = figures.customer_day_apps(_day_rows())["data"][0]
    minutes = dict(zip(trace["y"], trace["x"], strict=True))
    assert minutes == {"Tube": 20.0, "Chat": 15.0, "Blocks": 1.0}


def test_customer_day_hours_stacks_categories_over_24_hours():
    figure = figures.customer_day_hours(_day_rows())
    traces = {trace["name"]: trace for trace in figure["data"]}
    assert set(traces) == {"Communication", "Video", "Games"}
    assert all(len(trace["y"]) == 24 for trace in traces.values())
    assert traces["Communication"]["y"][8] == 10.0
    assert traces["Communication"]["y"][21] == 5.0
    assert traces["Video"]["y"][8] == 20.0
    total = sum(sum(trace["y"]) for trace in traces.values())
    assert total == pytest.approx(_day_rows()["seconds"].sum() / 60)
    assert figure["layout"]["barmode"] == "stack"


def test_weekly_revenue_stacks_categories_and_dims_other_weeks():
    weekly = pd.DataFrame(
        {
            "week": ["2026-01-05", "2026-01-05", "2026-01-12"],
            "category": ["Books", "Beauty", "Books"],
            "revenue": [10.0, 5.0, 7.5],
            "orders": [1, 1, 1],
        }
    )
    figure = figures.weekly_revenue(weekly, "2026-01-12", "Books")
    traces = {trace["name"]: trace for trace in figure["data"]}
    assert traces["Books"]["x"] == ["2026-01-05", "2026-01-12"]
    assert traces["Books"]["y"] == [10.0, 7.5]
    assert traces["Beauty"]["y"] == [5.0, 0.0]  # a week without the category stacks zero
    assert traces["Books"]["customdata"] == ["Books", "Books"]
    assert traces["Books"]["marker"]["opacity"] == [0.35, 1.0]
    assert traces["Beauty"]["marker"]["opacity"][1] < 1.0
    _assert_json(figure)


def test_a_week_the_range_cuts_short_is_lighter_and_says_how_many_days_it_holds():
    weekly = pd.DataFrame(
        {
            "week": ["2026-01-05", "2026-01-12", "2026-01-19"],
            "category": ["Books", "Books", "Books"],
            "revenue": [3.0, 7.0, 1.0],
            "orders": [1, 1, 1],
        }
    )
    # Friday 9 Jan to Monday 19 Jan: three days of the first week, one of the last.
    figure = figures.weekly_revenue(weekly, start=dt.date(2026, 1, 9), end=dt.date(2026, 1, 19))
    (books,) = figure["data"]
    assert books["hovertext"] == ["<br>partial week: 3 days", "", "<br>partial week: 1 day"]
    assert "%{hovertext}" in books["hovertemplate"]
    first, full, last = books["marker"]["opacity"]
    assert full == 1.0 and first < full and last < full
    # Without a range every week counts as whole.
    whole = figures.weekly_revenue(weekly)["data"][0]
    assert whole["hovertext"] == ["", "", ""] and whole["marker"]["opacity"] == [1.0] * 3
    _assert_json(figure)


def test_category_colours_are_stable_and_distinct():
    names = [f"category {n}" for n in range(12)]
    first = figures.category_colors(names)
    assert len(set(first.values())) == len(names)
    assert figures.category_colors(list(reversed(names))) == first
    assert set(first.values()) <= set(figures.PALETTE)


def test_grid_records_are_json_safe_and_bounded():
    frame = pd.DataFrame({"a": [1, 2, 3], "b": [1.5, float("nan"), 2.0], "c": ["x", None, "z"]})
    records = figures.grid_records(frame, limit=2)
    assert records == [{"a": 1, "b": 1.5, "c": "x"}, {"a": 2, "b": None, "c": None}]
    json.dumps(records, allow_nan=False)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (45, "45 s"), (14 * 60 + 10, "14 min"), (2 * 3600 + 5 * 60, "2 h 05 min")],
)
def test_format_duration(seconds, text):
    assert figures.format_duration(seconds) == text


def test_alert_tiles_count_open_alerts_by_severity_and_unacknowledged():
    alerts = pd.DataFrame(
        {
            "status": ["open", "open", "open", "resolved", "open"],
            "severity": ["error", "error", "warning", "error", "info"],
            "acknowledged_at": [None, 1.0, None, None, 2.0],
        }
    )
    tiles = {tile["metric"]: tile for tile in figures.alert_tiles(alerts)}
    assert tiles["alerts-error"]["value"] == "2"
    assert tiles["alerts-error"]["previous"] == "1 not acknowledged"
    assert tiles["alerts-warning"]["value"] == "1"
    assert tiles["alerts-info"]["previous"] == "0 not acknowledged"
    empty = figures.alert_tiles(alerts.iloc[0:0])
    assert [tile["value"] for tile in empty] == ["0", "0", "0"]
