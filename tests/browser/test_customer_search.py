"""The customer picker asks the server once typing pauses, not on every keystroke."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.plugins.browser import PAGES, SampleLake, wait_for_panels

pytestmark = pytest.mark.browser

SEARCH_OUTPUT = '"screen-customer.options"'


def test_typing_quickly_sends_fewer_searches_than_keystrokes(page, sample_lake: SampleLake):
    customer = f"c{sample_lake.customers - 1:07d}"
    page.goto(PAGES["screen-time"])
    wait_for_panels(page)
    searches: list[str] = []
    page.on(
        "request",
        lambda request: (
            searches.append(request.post_data or "")
            if "_dash-update-component" in request.url
            and SEARCH_OUTPUT in (request.post_data or "")
            else None
        ),
    )

    page.locator("#screen-customer").click()
    search = page.locator(".dash-dropdown-search")
    search.click()
    search.press_sequentially(customer, delay=40)  # well inside the 300 ms pause

    options = page.locator(".dash-dropdown-option")
    expect(options).to_have_count(1)
    expect(options.first).to_have_text(customer)
    assert 1 <= len(searches) < len(customer), f"{len(searches)} searches for {customer!r}"
    assert customer in searches[-1]
    assert page.console.errors == [], page.console.errors
