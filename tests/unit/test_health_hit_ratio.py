"""The Health page's cache-hit tile counts the other pages' reads, never the page's own.

Its live tile re-reads the pipeline stats every tick (from memory): counted, those reads would
push the ratio towards 100% whatever the operators' panels hit. Driven through the real app
with the renderer emulator the bench and the load tests use.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid

import pytest
from flask import Flask
from flask.testing import FlaskClient

from dashboard import create_app
from dashboard.pages.health import PIPELINE_LIVE
from devtools.operators import UPDATE_PATH, PageModel, PageSpec, Panel, render_body
from tests.plugins.browser import build_sample_lake

TILE = re.compile(r"Cache hit ratio.*?(\d+)%")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    lake = build_sample_lake(
        tmp_path_factory.mktemp("health-lake"),
        customers=3,
        days=3,
        end_date=dt.datetime.now(dt.UTC).date(),
    )
    return create_app(
        {
            "LAKE_ROOT": str(lake.settings.lake_root),
            "STATE_DB": str(lake.settings.state_db),
            "DATA_BACKEND": "local",
            "AUTH_MODE": "dev",
            "SECRET_KEY": "test",
            "REFRESH_CHOICES_MS": "1000",
            "REFRESH_FLOOR_MS": "0",
        }
    )


def _page(client: FlaskClient, path: str) -> PageModel:
    spec = PageSpec(path, "ours", path)
    dependencies = client.get("/_dash-dependencies").get_json()
    render = render_body(spec, dependencies)
    answer = client.post(UPDATE_PATH, data=render, content_type="application/json")
    assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
    return PageModel(spec, dependencies, answer.get_json()["response"], render)


def _poll(client: FlaskClient, model: PageModel, panel: Panel, tab: str) -> bytes:
    body = panel.body(0, tab, model.state, model.trigger_for(panel))
    answer = client.post(UPDATE_PATH, data=body, content_type="application/json")
    assert answer.status_code == 200, (panel.name, answer.get_data(as_text=True)[:300])
    return answer.get_data()


def _tile_percent(client: FlaskClient, health: PageModel) -> int:
    live = next(p for p in health.new_panels() if p.name == PIPELINE_LIVE)
    text = json.dumps(json.loads(_poll(client, health, live, uuid.uuid4().hex)))
    found = TILE.search(text)
    assert found, text[:500]
    return int(found.group(1))


def test_the_cache_hit_tile_leaves_out_the_health_pages_own_reads(server: Flask) -> None:
    client = server.test_client()
    client.get("/")
    health = _page(client, "/health")
    for panel in health.new_panels():  # every Health panel once: its lake reads
        _poll(client, health, panel, "health-tab")
    for _ in range(5):  # and the live tile's memory re-reads, tick after tick
        assert _tile_percent(client, health) == 0  # no other page has read anything

    overview = _page(client, "/")
    for tab in ("tab-a", "tab-b"):  # the first tab reads the lake, the second the memo
        for panel in overview.new_panels():
            _poll(client, overview, panel, tab)
    data = server.extensions["mission_control"].data
    assert data.counters.memory > 0 and data.counters.lake > 0
    assert _tile_percent(client, health) == 50
