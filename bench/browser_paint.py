"""Browser: time from navigation to every panel painted, in headless Chromium, warm cache.

The dashboard runs under gunicorn as in production over the serving sample lake; Debian's
Chromium is driven by Playwright with the flags of ``devtools/chromium.py``. Two kinds
of navigation:

- in-app, as a click on the navigation bar does it (``dcc.Link``: push the URL, let the
  pages router render): the scripts are loaded, only the page's callbacks run;
- a full page load (typing the URL, a reload): the browser also parses and runs the scripts
  again (Plotly alone is 3.5 MB), from its cache.

Each page is visited once to warm the server's caches and the browser's asset cache, then a
few more times; a visit counts from the start of navigation until every panel of the new page
has painted (no loading skeleton left).
"""

from __future__ import annotations

import statistics
from pathlib import Path

from bench.report import Report
from bench.serving import dashboard_env, serve, serving_lake
from devtools.chromium import ALL_PAINTED, VIEWPORT, chromium

TARGET_MS = 1500
# The same, on the page navigated to: none of the previous page's panels is left.
NEW_PAGE_PAINTED = (
    "(old) => document.querySelectorAll('.mc-skeleton').length === 0"
    " && document.querySelectorAll('.mc-panel').length > 0"
    " && Array.from(document.querySelectorAll('.mc-panel')).every(p => !old.includes(p.id))"
)
# What a dcc.Link click does.
PUSH_PATH = (
    "(path) => { window.history.pushState({}, '', path);"
    " window.dispatchEvent(new CustomEvent('_dashprivate_pushstate')); }"
)
PANEL_IDS = "() => Array.from(document.querySelectorAll('.mc-panel')).map(p => p.id)"


def page_paths(customer: str, day: str) -> dict[str, str]:
    """Every page; consecutive pages share no panel, so in-app navigation can tell them apart."""
    return {
        "overview": "/",
        "screen time (fleet)": "/screen-time",
        "revenue": "/revenue",
        "screen time (customer drill-down)": f"/screen-time?customer={customer}&day={day}",
        "alerts": "/alerts",
        "system health": "/health",
        "lake": "/lake",
    }


def browser(report: Report, folder: Path, *, full: bool) -> None:
    from playwright.sync_api import sync_playwright

    loads = 5 if full else 2
    lake = serving_lake(folder.parent, full=full)
    # The production refresh (5 s) so no poll lands inside a measured load.
    served_env = {**dashboard_env(lake, 5.0), "REFRESH_CHOICES_MS": "5000,10000"}
    full_loads: dict[str, list[float]] = {}
    in_app: dict[str, list[float]] = {}
    with (
        serve("ours", "wsgi:server", folder, served_env) as ours,
        sync_playwright() as playwright,
        chromium(playwright) as browser,
    ):
        context = browser.new_context(viewport=VIEWPORT, base_url=ours.url)
        context.set_default_timeout(30_000)
        tab = context.new_page()
        paths = page_paths(lake.customer, lake.day.isoformat())
        for label, path in paths.items():
            # The first load warms the server's and the browser's caches.
            full_loads[label] = [_load_ms(tab, path) for _ in range(loads + 1)][1:]
        for _ in range(loads):
            for label, path in paths.items():
                in_app.setdefault(label, []).append(_navigate_ms(tab, path))
        context.close()
    _report(report, "in-app navigation", in_app, loads)
    _report(report, "full page load", full_loads, loads)


def _report(report: Report, kind: str, timings: dict[str, list[float]], loads: int) -> None:
    medians = {label: statistics.median(values) for label, values in timings.items()}
    for label, median in medians.items():
        report.add(
            "browser",
            f"{kind} to all panels painted: {label}",
            median,
            unit="ms",
            target=f"< {TARGET_MS} ms",
            note=f"median of {loads} warm visits; slowest {max(timings[label]):.0f} ms",
        )
    slowest = max(medians, key=medians.__getitem__)
    report.add(
        "browser",
        f"{kind}: slowest page, median",
        medians[slowest],
        unit="ms",
        ratio=medians[slowest] / TARGET_MS,
        ratio_to="the 1.5 s target",
        target=f"< {TARGET_MS} ms",
        note=slowest,
    )


def _load_ms(tab, path: str) -> float:
    tab.goto(path, wait_until="commit")
    tab.wait_for_function(ALL_PAINTED, polling="raf")
    # performance.now() counts from the navigation's start (the time origin of the document).
    return float(tab.evaluate("() => performance.now()"))


def _navigate_ms(tab, path: str) -> float:
    old = tab.evaluate(PANEL_IDS)
    started = tab.evaluate("() => performance.now()")
    tab.evaluate(PUSH_PATH, path)
    tab.wait_for_function(NEW_PAGE_PAINTED, arg=old, polling="raf")
    return float(tab.evaluate("() => performance.now()")) - float(started)
