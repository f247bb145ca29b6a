"""The published schemas: the validator agrees with a reference JSON Schema implementation,
and every event the API accepts is a raw line the compactor accepts."""

from __future__ import annotations

import datetime as dt
import json
import string

import jsonschema_rs
import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_access import layout
from live.event_schemas import SCHEMAS, validate
from live.ingest import register_ingest
from live.settings import IngestSettings
from pipeline.schema import validate_event_line
from tests.live.factories import custom, pageview, purchase, utc_ts

# Any Unicode text but lone surrogates (which no JSON Schema library can judge the same way).
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=600)
SHORT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=8)
NUMBER = st.one_of(
    st.integers(-10, 2_000_000),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e10, max_value=1e10),
    st.just(2.0),
)
ANY_SCALAR = st.one_of(st.none(), st.booleans(), NUMBER, SHORT)
JSONISH = st.recursive(
    ANY_SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(SHORT, inner, max_size=3)),
    max_leaves=8,
)
VALID = {"purchase": purchase, "pageview": pageview, "custom": custom}


def field_values(name: str) -> st.SearchStrategy:
    """Values around what each field accepts, plus anything at all now and then."""
    special = {
        "event_id": st.text(string.ascii_letters + string.digits + "._:- ", max_size=140),
        "ts": st.sampled_from(
            [utc_ts(), "2026-11-01T08:15:03.123Z", "2026-11-01T08:15:03", "2026-11-01T08:15:03Z\n"]
        ),
        "quantity": NUMBER,
        "unit_price": NUMBER,
        "amount": NUMBER,
        "currency": st.sampled_from(["USD", "usd", "EURO", "ÄÖÜ", "US\n", "EUR\n"]),
        "referrer": st.one_of(st.none(), TEXT),
        "properties": st.dictionaries(SHORT, JSONISH, max_size=60),
        "event_type": st.sampled_from(["purchase", "pageview", "custom", "other"]),
    }
    return st.one_of(special.get(name, TEXT), JSONISH)


@st.composite
def events(draw, event_type: str) -> dict:
    """A valid event with up to three fields dropped, replaced or added."""
    event = VALID[event_type]()
    for _ in range(draw(st.integers(0, 3))):
        change = draw(st.sampled_from(["drop", "replace", "replace", "add"]))
        name = draw(st.sampled_from(sorted(event))) if event else None
        if change == "drop" and name:
            del event[name]
        elif change == "replace" and name:
            event[name] = draw(field_values(name))
        else:
            event[draw(SHORT)] = draw(JSONISH)
    return event


@pytest.mark.parametrize("event_type", list(SCHEMAS))
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_validator_agrees_with_a_reference_implementation(event_type, data):
    schema = SCHEMAS[event_type]
    event = data.draw(events(event_type))
    reference = jsonschema_rs.validator_for(schema).is_valid(event)
    ours = validate(event, schema)
    assert (not ours) == reference, ours


@pytest.mark.parametrize("event_type", list(SCHEMAS))
def test_the_factories_are_valid(event_type):
    assert validate(VALID[event_type](), SCHEMAS[event_type]) == []


ROUTES = {"purchase": "purchase", "pageview": "pageview", "custom": "event"}


@pytest.mark.parametrize("event_type", list(SCHEMAS))
def test_every_event_the_api_accepts_is_a_valid_raw_line(tmp_path, event_type):
    from data_access.apikeys import create_key
    from data_access.factory import build_stores
    from data_access.settings import DataSettings

    stores = build_stores(
        DataSettings(lake_root=tmp_path / event_type, state_db=tmp_path / f"{event_type}.db")
    )
    server = Flask("accepts")
    register_ingest(server, stores, IngestSettings(rate_burst=100_000, rate_per_second=10_000))
    client = server.test_client()
    token = create_key(stores.records, "fuzz", ["ingest"], created_by="t").token
    accepted = []

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(event=events(event_type))
    def post(event):
        response = client.post(
            f"/api/ingest/{ROUTES[event_type]}",
            data=json.dumps(event),
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "Idempotency-Key": "k",
            },
        )
        assert response.status_code in (200, 202, 400), response.json
        if response.status_code == 202:
            accepted.extend(response.json["event_ids"])

    post()
    assert accepted, "the strategy should produce some valid events"
    lines = [
        line
        for info in stores.lake.list(layout.RAW_EVENTS)
        for line in stores.lake.read_bytes(info.key).splitlines()
    ]
    assert len(lines) == len(accepted)
    for line in lines:
        assert validate_event_line(line, event_type).problems == (), line


def test_ts_window_is_checked_beyond_the_pattern():
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(days=31)).strftime("%Y-%m-%dT%H:%M:%SZ")
    # The pattern alone accepts it; the API's age check is what refuses it (see test_ingest_api).
    assert validate(pageview(ts=old), SCHEMAS["pageview"]) == []
