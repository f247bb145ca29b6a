"""Every CSV link in a real browser carries the data version its panel shows, and answers."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.plugins.browser import PAGES, dom_id, wait_for_panels

pytestmark = pytest.mark.browser

BADGE_VERSION = re.compile(r"data version (\S+?)(?:;|$)")


@pytest.mark.parametrize("name", ["overview", "screen-time", "revenue"])
def test_every_csv_link_is_pinned_to_the_version_its_panel_shows(page, name):
    page.goto(PAGES[name])
    wait_for_panels(page)
    # The link follows the version store once the panel's first answer is in.
    page.wait_for_function(
        "() => { const links = [...document.querySelectorAll('.mc-export')];"
        " return links.length > 0 && links.every("
        "   a => new URL(a.href).searchParams.get('version')); }"
    )
    links = page.locator(".mc-export")
    for index in range(links.count()):
        link = links.nth(index)
        href = link.get_attribute("href")
        pinned = parse_qs(urlsplit(href).query)["version"][0]
        panel = json.loads(link.get_attribute("id"))["panel"]
        title = page.locator(f"{dom_id(panel, 'badge')} .mc-badge").get_attribute("title")
        shown = BADGE_VERSION.search(title)
        assert shown is not None, title
        assert pinned == shown.group(1), (href, title)

        answer = page.request.get(href)
        assert answer.status == 200, (href, answer.text()[:300])
        assert answer.body().startswith(b"\xef\xbb\xbf")
    assert page.console.errors == [], page.console.errors
