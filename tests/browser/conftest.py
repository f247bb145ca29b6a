"""Browser tier: fixtures come from ``tests.plugins.browser`` (listed in tests/conftest.py).

A failing browser test gets the dashboard server's log (without access lines) in its report.
"""

from __future__ import annotations

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    server = getattr(item, "funcargs", {}).get("live_server")
    if report.failed and server is not None:
        lines = [
            line for line in server.log_tail(200_000).splitlines() if "gunicorn.access" not in line
        ]
        report.sections.append(("dashboard server log", "\n".join(lines[-60:])))
    return report
