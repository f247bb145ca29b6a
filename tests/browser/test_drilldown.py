"""Drill-down in a real browser: fleet -> customer -> day -> CSV, the URL, and Back."""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path

import pandas as pd
import pytest
from playwright.sync_api import expect

from dashboard import export
from data_access.queries import CustomerSessionsQuery, CustomerTrendQuery
from tests.plugins.browser import PAGES, SampleLake, dom_id, wait_for_panels

pytestmark = pytest.mark.browser

TREND, SESSIONS = "customer-trend", "customer-sessions"


def _range(lake: SampleLake) -> tuple[dt.date, dt.date]:
    return lake.end_date - dt.timedelta(days=6), lake.end_date


def _customer_and_day(lake: SampleLake) -> tuple[str, str, int]:
    """A customer with sessions in the last 7 days, its busiest day, and that day's bar index."""
    start, end = _range(lake)
    stores = lake.stores()
    for number in range(lake.customers):
        customer = f"c{number:07d}"
        trend = CustomerTrendQuery(start, end, customer_id=customer).load(stores)
        trend = trend.sort_values("day").reset_index(drop=True)
        if len(trend) >= 2 and trend["seconds"].max() > 0:
            index = int(trend["seconds"].idxmax())
            return customer, str(trend["day"][index]), index
    raise AssertionError("no customer with screen time in the sample")


def _expect_grid_total(page, rows: int) -> None:
    """The sessions grid's pager says it holds ``rows`` rows (once they have arrived)."""
    summary = page.locator(f"{dom_id(SESSIONS, 'grid')} .ag-paging-row-summary-panel")
    expect(summary).to_have_text(re.compile(rf"of\s+{rows:,}\s*$".replace(",", ",?")))


def _pick_customer(page, customer: str) -> None:
    page.locator("#screen-customer").click()
    search = page.locator(".dash-dropdown-search")
    search.fill(customer)  # the search box, once the list has opened and focused it
    expect(page.locator(".dash-dropdown-option", has_text=customer)).to_be_visible()
    page.keyboard.press("Enter")


def _click_bar(page, index: int) -> None:
    bar = page.locator(f"{dom_id(TREND, 'graph')} .barlayer .point").nth(index)
    expect(bar).to_be_attached()
    bar.scroll_into_view_if_needed()
    box = bar.bounding_box()  # in viewport coordinates, after the scroll
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)  # plotly clicks the point under the hover
    page.mouse.click(x, y)


def _read_csv(path: Path) -> pd.DataFrame:
    text = path.read_text(encoding="utf-8-sig")
    return pd.read_csv(io.StringIO(text), keep_default_na=False)


def test_drill_down_to_a_day_and_export_what_is_shown(page, sample_lake: SampleLake):
    customer, day, index = _customer_and_day(sample_lake)
    page.goto(f"{PAGES['screen-time']}?range=7d")
    wait_for_panels(page)

    _pick_customer(page, customer)
    page.wait_for_url(re.compile(f"customer={customer}"))
    wait_for_panels(page)
    _click_bar(page, index)
    page.wait_for_url(re.compile(f"day={day}"))
    wait_for_panels(page)

    expected = CustomerSessionsQuery(customer, dt.date.fromisoformat(day)).load(
        sample_lake.stores()
    )
    assert len(expected) > 0
    _expect_grid_total(page, len(expected))

    with page.expect_download() as download_info:
        page.locator(dom_id(SESSIONS, "export")).click()
    download = download_info.value
    assert customer in download.suggested_filename and day in download.suggested_filename
    exported = _read_csv(Path(download.path()))

    # Under the grid's titles; read back under the fields to compare the values.
    titles = {export.csv_column(field).header: field for field in expected.columns}
    assert list(exported.columns) == list(titles)
    exported = exported.rename(columns=titles)
    key = ["start", "end", "app_name"]
    pd.testing.assert_frame_equal(
        exported.sort_values(key).reset_index(drop=True),
        expected.sort_values(key).reset_index(drop=True),
        check_dtype=False,
    )
    assert page.console.errors == []


def test_url_round_trips_the_drill_down_and_back_steps_out(page, sample_lake: SampleLake):
    customer, day, _ = _customer_and_day(sample_lake)
    sessions = CustomerSessionsQuery(customer, dt.date.fromisoformat(day)).load(
        sample_lake.stores()
    )

    # A shared link opens the same view: customer picked, day drilled into.
    page.goto(f"{PAGES['screen-time']}?range=7d")
    wait_for_panels(page)
    page.goto(f"{PAGES['screen-time']}?range=7d&customer={customer}&day={day}")
    wait_for_panels(page)
    expect(page.locator("#screen-customer-value")).to_have_text(customer)
    title = f"Sessions on {dt.date.fromisoformat(day):%a %d %b %Y}"
    expect(page.locator(f"#panel-{SESSIONS}")).to_contain_text(title)
    _expect_grid_total(page, len(sessions))

    # Back leaves the drill-down for the fleet view it came from.
    page.go_back()
    page.wait_for_url(re.compile(r"/screen-time\?range=7d$"))
    expect(page.locator(f"#panel-{SESSIONS}")).to_have_count(0)
    expect(page.locator("#customer-section")).to_contain_text("No customer selected.")
    wait_for_panels(page)
    assert page.console.errors == []


def test_back_steps_out_of_a_drill_down_one_level_at_a_time(page, sample_lake: SampleLake):
    customer, day, index = _customer_and_day(sample_lake)
    page.goto(f"{PAGES['screen-time']}?range=7d")
    wait_for_panels(page)
    _pick_customer(page, customer)
    page.wait_for_url(re.compile(f"customer={customer}"))
    wait_for_panels(page)
    _click_bar(page, index)
    page.wait_for_url(re.compile(f"day={day}"))

    page.go_back()
    page.wait_for_url(re.compile(f"customer={customer}$"))
    expect(page.locator(f"#panel-{SESSIONS}")).to_have_count(0)
    expect(page.locator(f"#panel-{TREND}")).to_be_visible()
    page.go_back()
    page.wait_for_url(re.compile(r"/screen-time\?range=7d$"))
    expect(page.locator("#customer-section")).to_contain_text("No customer selected.")
