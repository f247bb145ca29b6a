"""Hostile-input tests: the app in-process over a small lake, inside a folder whose
surroundings the tests watch for anything written or read outside the lake."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from dashboard import create_app
from data_access import layout
from tests.plugins.browser import SampleLake, build_sample_lake

# Each example is one in-process request of a few ms: a few hundred per test stay fast.
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# A file beside the lake that no request may ever read back or change.
SECRET_MARKER = "outside-the-lake-7f3a9c"


@dataclass
class FuzzSite:
    lake: SampleLake
    server: object  # the Flask app
    client: object  # its test client
    outside: Path  # a folder beside the lake holding SECRET_MARKER files

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """Every file under the lake's parent folder outside the lake: size and mtime."""
        found = {}
        lake_root = self.lake.settings.lake_root.resolve()
        for folder, folders, files in os.walk(self.lake.root):
            # Not into the lake itself: only its surroundings are watched.
            folders[:] = [f for f in folders if Path(folder, f).resolve() != lake_root]
            for name in files:
                path = Path(folder, name)
                if path.name.startswith("state.sqlite"):
                    continue  # the state database lives beside the lake and changes
                stat = path.stat()
                found[str(path)] = (stat.st_size, stat.st_mtime_ns)
        return found


def plant_secrets(outside: Path) -> None:
    """Files a path escape from the lake would reach, each holding SECRET_MARKER.

    Named as the lake names its objects, so a key that escapes the lake by one level reads
    a file shaped like what the reader expects.
    """
    for relative in (
        "secret.txt",
        layout.screen_time_part_key("2024-01-01", layout.screen_time_bucket("c0000001"), "0" * 16),
        layout.raw_upload_key("c0000001", "2024-01-01"),
        layout.screen_time_summary_key("2024-01-01"),
        layout.business_rollup_key("2024-01-01", "stats"),
    ):
        path = outside / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(SECRET_MARKER)


@pytest.fixture(scope="module")
def fuzz_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzSite]:
    root = tmp_path_factory.mktemp("fuzz")
    lake = build_sample_lake(root, customers=3, days=5, end_date=dt.datetime.now(dt.UTC).date())
    outside = root / "outside"
    plant_secrets(outside)
    server = create_app(
        {
            "LAKE_ROOT": str(lake.settings.lake_root),
            "STATE_DB": str(lake.settings.state_db),
            "SECRET_KEY": "fuzz",
            "DEV_ROLE": "admin",  # every route and callback open to the fuzzer
            "REFRESH_FLOOR_MS": "0",
            "LOG_LEVEL": "CRITICAL",
        }
    )
    client = server.test_client()
    assert client.get("/").status_code == 200
    yield FuzzSite(lake, server, client, outside)
