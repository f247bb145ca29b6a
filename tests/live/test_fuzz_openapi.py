"""Schema-driven fuzzing of the ingest API from its own ``/api/openapi.json`` (schemathesis):
no input gets a 5xx, and every schema-valid event with a current time is accepted."""

from __future__ import annotations

import json
import uuid

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from data_access.apikeys import create_key
from live.ingest import register_ingest
from live.settings import IngestSettings
from tests.live.factories import utc_ts

OPERATIONS = ["purchase", "pageview", "event", "batch"]
EXPECTED = {200, 202, 400, 401, 403, 413, 415, 429}
FUZZ = settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _ndjson(_context, value) -> bytes:
    if isinstance(value, list):
        return b"".join(json.dumps(item).encode() + b"\n" for item in value)
    return json.dumps(value).encode()


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    from data_access.factory import build_stores
    from data_access.settings import DataSettings

    schemathesis.serializer("application/x-ndjson")(_ndjson)
    folder = tmp_path_factory.mktemp("fuzz")
    stores = build_stores(DataSettings(lake_root=folder / "lake", state_db=folder / "s.db"))
    server = Flask("fuzz")
    register_ingest(server, stores, IngestSettings(rate_per_second=1e6, rate_burst=10**6))
    token = create_key(stores.records, "fuzz", ["ingest"], created_by="t").token
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", server)
    return schema, {"Authorization": f"Bearer {token}"}


def operation(schema, name: str):
    return schema[f"/api/ingest/{name}"]["POST"]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("name", OPERATIONS)
def test_no_input_gets_a_server_error(api, name, mode):
    schema, auth = api
    statuses = set()

    @FUZZ
    @given(case=operation(schema, name).as_strategy(mode))
    def check(case):
        response = case.call(headers=auth)
        statuses.add(response.status_code)
        assert response.status_code in EXPECTED, (response.status_code, response.text[:500])

    check()
    assert statuses, "no case ran"


def _current(event: object) -> object:
    """The same event with a time inside the accepted window and an id."""
    if isinstance(event, dict):
        return {**event, "ts": utc_ts(), "event_id": uuid.uuid4().hex}
    return event


@pytest.mark.parametrize("name", OPERATIONS)
def test_schema_valid_events_with_a_current_time_are_accepted(api, name):
    """The published schema promises what the server accepts (the time window aside)."""
    schema, auth = api
    statuses = []

    @FUZZ
    @given(case=operation(schema, name).as_strategy(GenerationMode.POSITIVE))
    def check(case):
        case.body = [_current(e) for e in case.body] if name == "batch" else _current(case.body)
        response = case.call(headers=auth)
        statuses.append(response.status_code)
        assert response.status_code in (200, 202), (response.text[:500], case.body)

    check()
    assert 202 in statuses
