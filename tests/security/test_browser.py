"""In a real Chromium: every page renders under the Content-Security-Policy with no violation,
and a page on another site cannot make the browser post to the dashboard.

Violations are caught two ways: the ``securitypolicyviolation`` DOM event (every blocked
script, style, eval, image or connection fires it, caught or not) and the console, where
Chromium reports each one as an error.
"""

from __future__ import annotations

import json
import uuid

import pytest

from devtools.servers import free_port
from tests.plugins.browser import PAGES, DashboardServer, SampleLake, wait_for_panels
from tests.plugins.faults import wait_until

pytestmark = pytest.mark.browser

LISTEN_FOR_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
    window.__cspViolations.push({
        directive: event.violatedDirective,
        blocked: event.blockedURI,
        source: event.sourceFile,
        line: event.lineNumber,
        sample: event.sample,
    });
});
"""
PLAIN_PAGES = ["/auth/whoami", "/admin/audit", "/signed-out", "/no-such-page"]
# Another site on loopback (localhost is not the same site as 127.0.0.1), served by the
# browser's request interception: no server behind it.
EVIL_HOST = "localhost"


def _violations(page) -> list[dict]:
    return page.evaluate("window.__cspViolations || []")


def _csp_console_errors(page) -> list[str]:
    return [text for text in page.console.errors if "Content Security Policy" in text]


def test_every_page_renders_under_the_policy_without_violations(
    page, live_server: DashboardServer, sample_lake: SampleLake
) -> None:
    page.context.add_init_script(LISTEN_FOR_VIOLATIONS)
    response = page.goto("/")
    assert response is not None and "script-src" in response.headers.get(
        "content-security-policy", ""
    ), "the dashboard does not send its Content-Security-Policy"
    customer_view = f"/screen-time?customer=c0000001&day={sample_lake.end_date.isoformat()}"
    for path in [*PAGES.values(), customer_view]:
        page.goto(path)
        wait_for_panels(page)
        page.wait_for_timeout(1500)  # a poll or two, a template switch, badge ages ticking
        assert _violations(page) == [], (path, _violations(page))
        plots = page.locator(".js-plotly-plot")
        if plots.count():
            plots.first.hover()  # Plotly draws hover labels with inline styles
    page.click("#mc-theme-toggle")  # a clientside callback re-themes every figure
    page.wait_for_timeout(1000)
    assert _violations(page) == []
    for path in PLAIN_PAGES:
        page.goto(path)
        assert _violations(page) == [], (path, _violations(page))
    assert _csp_console_errors(page) == []


def _access_status(server: DashboardServer, method: str, path: str, marker: str) -> int | None:
    """The status gunicorn logged for the request carrying ``marker`` in its query."""
    for line in server.log_tail(400_000).splitlines():
        if '"gunicorn.access"' not in line or marker not in line:
            continue
        entry = json.loads(line)
        if entry["method"] == method and entry["path"] == path:
            return int(entry["status"])
    return None


@pytest.mark.parametrize("target", ["/logout", "/_dash-update-component"])
def test_a_page_on_another_site_cannot_post_to_the_dashboard(
    browser, live_server: DashboardServer, target: str
) -> None:
    """A form on another site posts to the dashboard: the browser sends it (a navigation),
    marked cross-site, and the dashboard refuses it. (A script's fetch() from there does not
    even leave Chromium, which blocks pages from reaching loopback addresses.)"""
    marker = f"lure={uuid.uuid4().hex}"
    evil_origin = f"http://{EVIL_HOST}:{free_port()}"
    # text/plain forms need no preflight: the classic shape of a forged JSON post.
    evil_page = f"""<!doctype html><html><body onload="document.forms[0].submit()">
    <form method="POST" enctype="text/plain" action="{live_server.url}{target}?{marker}">
      <input name='{{"output": "mc-url.search", "inputs": [], "x": "' value='"}}'>
    </form></body></html>"""
    context = browser.new_context()
    context.route(
        f"{evil_origin}/**",
        lambda route: route.fulfill(status=200, content_type="text/html", body=evil_page),
    )
    try:
        tab = context.new_page()
        tab.goto(f"{evil_origin}/lure")
        tab.wait_for_url(f"{live_server.url}{target}?{marker}", timeout=15_000)
        assert "Cross-site request refused" in tab.inner_text("body")
    finally:
        context.close()
    assert wait_until(lambda: _access_status(live_server, "POST", target, marker), timeout=10)
    assert _access_status(live_server, "POST", target, marker) == 403
