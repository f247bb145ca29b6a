"""Outages as an operator sees them: the dashboard on the AWS backend, polled panel by panel
through Flask's test client while DynamoDB Local or SeaweedFS is stopped and started again.

- DynamoDB down: the fleet panels still answer from S3, and say "Degraded: cache table
  unreachable"; once DynamoDB is back they answer cleanly again without a restart of the app.
  DynamoDB Local runs in memory, so the test bootstraps its tables again after the restart;
  a real DynamoDB outage keeps the tables and needs no such step.
- S3 down: a panel whose version did not change keeps what it shows; another worker answers
  from the cache table; a panel whose data changed keeps its last good answer with a stale
  badge; nothing answers 500; once S3 is back the new data shows.

These tests stop and start their own servers, so the session-wide ones stay untouched.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from dashboard import create_app, figures
from dashboard.components.url_state import parse_view_state
from data_access import aws, layout
from data_access.queries import FleetDailyQuery
from data_access.service import DataService
from data_access.settings import DataSettings
from data_access.stores import Stores
from devtools.servers import DynamoDBLocal, SeaweedS3
from pipeline.bootstrap import bootstrap
from pipeline.process import drain
from pipeline.rollup import rollup_screen_time
from tests.aws.panels import (
    FLEET_ACTIVITY,
    FLEET_TILES,
    Panel,
    PanelReply,
    poll_body,
    write_uploads,
)
from tests.plugins.servers import AwsClients, aws_env_for, clients_for, start_server

pytestmark = pytest.mark.aws

TODAY = dt.datetime.now(dt.UTC).date()
RECOVERY_SECONDS = 30.0


@dataclass
class Stack:
    dynamodb: DynamoDBLocal
    seaweed: SeaweedS3
    env: dict[str, str]
    settings: DataSettings
    clients: AwsClients
    stores: Stores


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with contextlib.ExitStack() as cleanup, pytest.MonkeyPatch.context() as patch:
        dynamodb = start_server(DynamoDBLocal)
        cleanup.callback(dynamodb.cleanup)
        seaweed = start_server(SeaweedS3)
        cleanup.callback(seaweed.cleanup)
        env = {
            **aws_env_for(dynamodb, seaweed, tmp_path_factory),
            # A small budget keeps each failing call short; the behaviour is the same.
            "AWS_CONNECT_TIMEOUT_SECONDS": "0.5",
            "AWS_READ_TIMEOUT_SECONDS": "1",
            "AWS_MAX_ATTEMPTS": "2",
            # Every poll asks the state store afresh, so a test never waits for a memo to lapse.
            "VERSION_MEMO_SECONDS": "0",
            "SECRET_KEY": "panel-failures",
            "AUTH_MODE": "dev",
            "REFRESH_FLOOR_MS": "0",
        }
        for name, value in env.items():
            patch.setenv(name, value)  # boto3 inside create_app reads credentials from here
        settings = DataSettings.from_env(env)
        clients = clients_for(settings)
        bootstrap(settings, s3=clients.s3, dynamodb=clients.dynamodb)
        stores = aws.build_aws_stores(settings, s3=clients.s3, dynamodb=clients.dynamodb)
        cleanup.callback(stores.lake.close)  # type: ignore[attr-defined]
        write_uploads(stores, customers=3, days=3, end=TODAY, seed=5)
        drain(stores)
        rollup_screen_time(stores)
        yield Stack(dynamodb, seaweed, env, settings, clients, stores)


def _client(stack: Stack) -> Any:
    client = create_app(stack.env).test_client()
    assert client.get("/").status_code == 200
    return client


def _poll(client: Any, panel: Panel, version: str | None, tab: str) -> Any:
    return client.post(
        "/_dash-update-component", json=poll_body(panel, version=version, tab=tab, today=TODAY)
    )


def _reply(response: Any, panel: Panel) -> PanelReply:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return PanelReply(panel, response.get_json())


def _expected_tile_values(stack: Stack) -> list[str]:
    """The fleet tiles computed straight from the lake, without the dashboard."""
    view = parse_view_state({}, TODAY)
    service = DataService(stack.stores, stack.settings)
    daily = service.fetch(FleetDailyQuery(view.start, view.end)).data
    return [tile["value"] for tile in figures.fleet_tiles(daily)]


def _poll_until_clean(client: Any, panel: Panel, version: str | None, tab: str) -> PanelReply:
    """Poll as the browser does after an outage until the panel answers without a problem."""
    deadline = time.monotonic() + RECOVERY_SECONDS
    while True:
        response = _poll(client, panel, version, tab)
        assert response.status_code in (200, 204), response.get_data(as_text=True)[:500]
        if response.status_code == 200:
            reply = _reply(response, panel)
            if not reply.status_text and reply.badge_label in ("lake", "cache", "memory"):
                return reply
            version = reply.version
        assert time.monotonic() < deadline, f"{panel[0]} did not recover: {reply.status_text}"
        time.sleep(0.5)


def _rebootstrap(stack: Stack) -> None:
    # DynamoDB Local keeps its tables in memory; a real DynamoDB outage loses nothing.
    bootstrap(stack.settings, s3=stack.clients.s3, dynamodb=stack.clients.dynamodb)


def test_dynamodb_down_panel_answers_from_s3_marked_degraded_then_recovers(stack):
    client = _client(stack)
    expected = _expected_tile_values(stack)
    first = _reply(_poll(client, FLEET_TILES, None, "tab-a"), FLEET_TILES)
    assert first.status_text == ""
    for value in expected:
        assert value in first.content_text()

    stack.dynamodb.stop()
    try:
        during = _reply(_poll(client, FLEET_TILES, first.version, "tab-a"), FLEET_TILES)
        # Same numbers, read from S3; the panel says which tier failed.
        for value in expected:
            assert value in during.content_text()
        assert during.status_text.startswith("Degraded: cache table unreachable.")
        assert "mc-tier-stale" in during.badge_class
        assert during.badge_label == "lake"
        assert "cache table unreachable" in during.badge_title
        # Polling on during the outage keeps the degraded mark (memo hits included).
        again = _reply(_poll(client, FLEET_TILES, during.version, "tab-a"), FLEET_TILES)
        assert again.status_text.startswith("Degraded: cache table unreachable.")
        assert again.badge_label == "memory"
        # A tab opened during the outage gets the data too, marked the same way.
        fresh_tab = _reply(_poll(client, FLEET_TILES, None, "tab-b"), FLEET_TILES)
        assert fresh_tab.status_text.startswith("Degraded: cache table unreachable.")
        for value in expected:
            assert value in fresh_tab.content_text()
    finally:
        stack.dynamodb.start()
        _rebootstrap(stack)

    recovered = _poll_until_clean(client, FLEET_TILES, during.version, "tab-a")
    assert recovered.version != during.version
    assert "mc-tier-stale" not in recovered.badge_class
    for value in expected:
        assert value in recovered.content_text()


def test_s3_down_panel_keeps_last_good_data_with_stale_badge_then_recovers(stack):
    client = _client(stack)
    first = _reply(_poll(client, FLEET_ACTIVITY, None, "tab-a"), FLEET_ACTIVITY)
    assert first.status_text == ""
    assert first.content["data"], "the fleet activity figure has traces"

    stack.seaweed.stop()
    try:
        # Nothing changed: the panel keeps what it shows without reading anything (204).
        unchanged = _poll(client, FLEET_ACTIVITY, first.version, "tab-a")
        assert unchanged.status_code == 204, unchanged.get_data(as_text=True)[:500]

        # Another worker, with an empty memory, answers from the cache table without S3.
        other = _reply(_poll(_client(stack), FLEET_ACTIVITY, None, "tab-b"), FLEET_ACTIVITY)
        assert other.badge_label == "cache"
        assert other.status_text == ""
        assert other.content == first.content

        # A rollup elsewhere publishes new data the app cannot read while S3 is down.
        stack.stores.state.put(
            layout.screen_time_date_version(TODAY.isoformat()), "published-during-outage"
        )
        stale = _reply(_poll(client, FLEET_ACTIVITY, first.version, "tab-a"), FLEET_ACTIVITY)
        assert stale.content == first.content  # the last good answer, not an empty chart
        assert stale.badge_label == "stale"
        assert "mc-tier-stale" in stale.badge_class
        assert stale.status_text.startswith("Degraded: lake unreachable.")
        assert stale.version != first.version  # never equal, so the next poll retries S3
        again = _poll(client, FLEET_ACTIVITY, stale.version, "tab-a")
        assert again.status_code == 200
        assert _reply(again, FLEET_ACTIVITY).badge_label == "stale"
    finally:
        stack.seaweed.start()

    recovered = _poll_until_clean(client, FLEET_ACTIVITY, stale.version, "tab-a")
    assert recovered.badge_label == "lake"
    assert "published-during-outage" in recovered.version
    assert recovered.content["data"]
