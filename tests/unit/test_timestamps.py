"""Pages show a moment as ``YYYY-MM-DD HH:MM:SS UTC``: tiles, tables and grid cells."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from dashboard.health_figures import PipelineNumbers, pipeline_tiles
from dashboard.pages.revenue import ORDER_COLUMNS
from dashboard.pages.screen_time import SESSION_COLUMNS
from dashboard.timestamps import utc_text

FORMATTERS = Path(__file__).resolve().parents[2] / "assets" / "mc-grid-formatters.js"
MOMENT = dt.datetime(2026, 11, 20, 9, 5, 7, tzinfo=dt.UTC).timestamp()


def test_utc_text_has_the_one_format():
    assert utc_text(MOMENT) == "2026-11-20 09:05:07 UTC"


def test_the_latest_upload_tile_shows_date_time_and_utc():
    numbers = PipelineNumbers(3, 0, MOMENT, 10, 100)
    tile = next(t for t in pipeline_tiles(numbers) if t["metric"] == "health-latest-upload")
    assert tile["value"] == "2026-11-20 09:05:07 UTC"


def _formatted(function: str, values: list[object]) -> list[str]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    script = (
        f"{FORMATTERS.read_text()}\n"
        f"process.stdout.write(JSON.stringify({json.dumps(values)}.map("
        f"v => globalThis.dashAgGridFunctions.{function}(v))));"
    )
    out = subprocess.run([node, "-e", script], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _formatter(columns: list[dict], field: str) -> str:
    column = next(c for c in columns if c["field"] == field)
    return column["valueFormatter"]["function"].split("(")[0]


def test_the_orders_grid_shows_its_times_in_the_one_format():
    function = _formatter(ORDER_COLUMNS, "ts")
    shown = _formatted(
        function,
        ["2026-11-20 09:05:07", "2026-11-20T09:05:07Z", "2026-11-20T10:05:07+01:00", None],
    )
    assert shown == ["2026-11-20 09:05:07 UTC"] * 3 + [""]


def test_the_sessions_grid_shows_device_times_without_a_t():
    for field in ("start", "end"):
        function = _formatter(SESSION_COLUMNS, field)
        assert _formatted(function, ["2026-11-20T08:15:00"]) == ["2026-11-20 08:15:00"]
