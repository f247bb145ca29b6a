"""Retake the README's screenshots (docs/screenshots/) from the running app with sample data.

Starts the dashboard the way the browser tests do (``tests.plugins.browser``: the sample lake
built by the real pipeline, gunicorn as production runs it, Debian's Chromium through
Playwright), then writes every page in the light theme, the overview in the dark theme and at
phone size (390x844), and the revenue page as a viewer sees it:

    .venv/bin/python -m scripts.screenshots [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devtools.chromium import VIEWPORT, chromium
from tests.plugins.browser import (
    PAGES,
    SAMPLE_CUSTOMERS,
    SAMPLE_DAYS,
    DashboardServer,
    SampleLake,
    build_sample_lake,
    wait_for_panels,
)

OUT = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
PHONE = {"width": 390, "height": 844}


@contextmanager
def _server(lake: SampleLake, role: str | None = None) -> Iterator[DashboardServer]:
    # The refresh picker as shipped (the tests' server polls every second).
    env = {"REFRESH_CHOICES_MS": "5000,10000,30000,60000", "REFRESH_DEFAULT_MS": "5000"}
    env["REFRESH_FLOOR_MS"] = "4000"
    if role:
        env["DEV_ROLE"] = role
    server = DashboardServer(lake, extra_env=env)
    try:
        server.start()
        server.warm_up_workers()
        yield server
    finally:
        server.cleanup()


def _shoot(browser, url: str, path: Path, *, full_page: bool = False, **context: object) -> None:
    page_context = browser.new_context(**{"viewport": VIEWPORT, **context})
    page_context.set_default_timeout(30_000)
    try:
        page = page_context.new_page()
        page.goto(url)
        wait_for_panels(page)
        page.screenshot(path=str(path), full_page=full_page)
        print(f"wrote {path}")
    finally:
        page_context.close()


def take(out: Path, workdir: Path) -> None:
    from playwright.sync_api import sync_playwright

    end = dt.datetime.now(dt.UTC).date()
    lake = build_sample_lake(workdir, customers=SAMPLE_CUSTOMERS, days=SAMPLE_DAYS, end_date=end)
    # The revenue page with this week's orders listed under the chart.
    week = end - dt.timedelta(days=end.weekday())
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright, chromium(playwright) as browser:
        with _server(lake) as server:
            for name, path in PAGES.items():
                url = server.url + path
                if name == "revenue":
                    url += f"?week={week.isoformat()}"
                _shoot(browser, url, out / f"{name}.png", color_scheme="light")
            _shoot(browser, server.url, out / "overview-dark.png", color_scheme="dark")
            _shoot(
                browser,
                server.url,
                out / "overview-phone.png",
                viewport=PHONE,
                is_mobile=True,
                has_touch=True,
                color_scheme="light",
            )
        with _server(lake, role="viewer") as server:
            # No CSV links, and the week's orders say they need the operator role.
            _shoot(
                browser,
                f"{server.url}{PAGES['revenue']}?week={week.isoformat()}",
                out / "revenue-viewer.png",
                color_scheme="light",
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="where the PNGs go")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="mc-screenshots-"))
    try:
        take(args.out, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
