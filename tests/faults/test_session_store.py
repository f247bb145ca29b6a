"""The session store goes down: signed-in requests are refused with a 503 and Retry-After
(an HTML page for a navigation, JSON for a script), never let through on a guess, and
carry on once it is back.

The sessions live in DynamoDB Local, reached through a fault proxy the test cuts; the app
is the auth tests' small guarded app with each request asking the store (no recheck cache).
"""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest

from auth.context import auth_state
from data_access import aws
from data_access.settings import DataSettings
from data_access.stores import Stores
from devtools.servers import TEST_ACCESS_KEY, TEST_REGION, TEST_SECRET_KEY, DynamoDBLocal
from tests.auth.conftest import build_app
from tests.auth.test_guard import HTML, oidc_settings, sign_in_as
from tests.plugins.faults import FaultProxy

pytestmark = pytest.mark.aws


@pytest.fixture
def dynamodb_proxy(dynamodb_local: DynamoDBLocal) -> Iterator[FaultProxy]:
    with FaultProxy(dynamodb_local.port) as proxy:
        yield proxy


@pytest.fixture
def records_through_proxy(
    aws_stores: Stores, aws_settings: DataSettings, dynamodb_proxy: FaultProxy
) -> aws.DynamoRecordStore:
    settings = DataSettings(
        backend="aws",
        dynamodb_endpoint=dynamodb_proxy.endpoint,
        aws_region=TEST_REGION,
        connect_timeout_seconds=0.5,
        read_timeout_seconds=1.0,
        max_attempts=1,
    )
    session = boto3.Session(
        aws_access_key_id=TEST_ACCESS_KEY,
        aws_secret_access_key=TEST_SECRET_KEY,
        region_name=TEST_REGION,
    )
    table = aws.RECORDS_TABLE.table_name(aws_settings)
    return aws.DynamoRecordStore(aws.dynamodb_client(settings, session), table)


def test_session_store_down_refuses_with_503_and_retry_after_then_recovers(
    records_through_proxy, dynamodb_proxy
):
    app = build_app(oidc_settings(SESSION_RECHECK_SECONDS="0"), records_through_proxy)
    client = app.test_client()
    sign_in_as(client, "operator")
    assert client.get("/revenue", headers=HTML).status_code == 200
    assert auth_state(app).sessions is not None

    dynamodb_proxy.set_mode("refuse")
    page = client.get("/revenue", headers=HTML)
    script = client.post(
        "/_dash-update-component",
        json={"output": "kpi.figure", "inputs": [], "changedPropIds": ["mc-poll.n_intervals"]},
    )
    sign_out = client.post("/logout")
    probe = client.get("/healthz")
    dynamodb_proxy.heal()
    after = client.get("/revenue", headers=HTML)

    assert page.status_code == 503
    assert page.mimetype == "text/html" and "Sessions unavailable" in page.text
    assert int(page.headers["Retry-After"]) > 0
    assert script.status_code == 503 and script.json["status"] == 503
    assert int(script.headers["Retry-After"]) > 0
    assert sign_out.status_code == 503  # not signed out on a guess: the cookie stays
    assert probe.status_code == 200  # public routes do not need the store
    assert after.status_code == 200  # the same cookie works again
