"""A panel's Inspect view in a real browser: the query, the data version the panel shows, and
the rows its grid and its CSV hold."""

from __future__ import annotations

import io
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest
from playwright.sync_api import expect

from tests.plugins.browser import PAGES, dom_id, wait_for_panels

pytestmark = pytest.mark.browser

PANEL = "revenue-products"
CATEGORY_FILTER = {"category": {"filterType": "text", "type": "equals", "filter": "Electronics"}}

# The product ids a grid holds after its filter and sort, in the order it shows them.
GRID_PRODUCT_IDS = """id => {
    const ids = [];
    dash_ag_grid.getApi(id).forEachNodeAfterFilterAndSort(node => ids.push(node.data.product_id));
    return ids;
}"""


def _grid_ids(page, grid_id) -> list[str]:
    return page.evaluate(GRID_PRODUCT_IDS, grid_id)


def test_inspect_shows_the_query_the_version_and_the_rows_of_grid_and_csv(page):
    page.goto(PAGES["revenue"])
    wait_for_panels(page)
    grid_id = {"panel": PANEL, "type": "mc-grid"}
    # Filter and sort the grid as an operator would: Inspect must follow, as the CSV does.
    page.evaluate(
        """([id, model]) => {
            const api = dash_ag_grid.getApi(id);
            api.setFilterModel(model);
            api.applyColumnState({state: [{colId: 'quantity', sort: 'desc'}]});
        }""",
        [grid_id, CATEGORY_FILTER],
    )
    link = page.locator(dom_id(PANEL, "inspect"))
    page.wait_for_function(
        """link => { const p = new URL(link.href).searchParams;
            return p.get('version') && p.get('filter') && p.get('sort'); }""",
        arg=link.element_handle(),
    )
    shown = _grid_ids(page, grid_id)
    assert shown, "the filter left no rows to compare"
    pinned = parse_qs(urlsplit(link.get_attribute("href")).query)["version"][0]

    link.click()
    page.wait_for_url("**/inspect?*")
    expect(page.locator("#inspect-query")).to_contain_text("TopProductsQuery")
    expect(page.locator("#inspect-query")).to_contain_text("Electronics")  # the grid's filter
    expect(page.locator("#inspect-version")).to_have_text(pinned)
    expect(page.locator("#inspect-provenance")).to_contain_text("pinned")
    expect(page.locator("#inspect-count")).to_have_text(f"{len(shown)} rows")
    page.wait_for_function("() => dash_ag_grid.getApi('inspect-rows') !== undefined")
    assert _grid_ids(page, "inspect-rows") == shown

    csv_href = page.locator("#inspect-export").get_attribute("href")
    assert parse_qs(urlsplit(csv_href).query)["version"] == [pinned]
    answer = page.request.get(csv_href)
    assert answer.status == 200, answer.text()[:300]
    exported = pd.read_csv(io.StringIO(answer.body().decode("utf-8-sig")), dtype=str)
    assert exported["Product id"].tolist() == shown

    page.locator("#inspect-back").click()
    page.wait_for_url("**/revenue?range=7d")
    wait_for_panels(page)
    assert page.console.errors == [], page.console.errors


def test_a_gone_version_is_named_with_a_link_to_the_current_data(page):
    page.goto("/inspect?panel=products&range=7d&version=0.5")
    message = page.locator(".mc-empty-hint")
    expect(message).to_contain_text("no longer kept")
    expect(page.locator("#inspect-rows")).to_have_count(0)
    message.get_by_role("link").click()
    expect(page.locator("#inspect-provenance")).to_contain_text("current")
    expect(page.locator("#inspect-count")).to_contain_text("rows")
