"""The ingest API over HTTP (Flask test client): validation, limits, keys, idempotency."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time

import pyarrow.parquet as pq
import pytest
from flask import Flask

from data_access import layout
from data_access.apikeys import create_key, revoke_key
from data_access.idempotency import idempotency_kind
from data_access.stores import StoreUnavailable
from live.ingest import register_ingest
from live.settings import IngestSettings
from pipeline.events import compact_events
from pipeline.schema import validate_event_line
from tests.live.conftest import FakeClock
from tests.live.factories import custom, pageview, purchase, utc_ts


def raw_objects(stores, event_type: str) -> list[str]:
    return [info.key for info in stores.lake.list(f"{layout.RAW_EVENTS}{event_type}/")]


def ndjson(events: list[dict]) -> bytes:
    return b"".join(json.dumps(event).encode() + b"\n" for event in events)


@pytest.mark.parametrize(
    ("route", "event_type", "make"),
    [
        ("purchase", "purchase", purchase),
        ("pageview", "pageview", pageview),
        ("event", "custom", custom),
    ],
)
def test_accepted_event_is_one_durable_raw_line_the_compactor_accepts(
    client, auth, local_stores, route, event_type, make
):
    event = make()
    response = client.post(f"/api/ingest/{route}", json=event, headers=auth)
    assert response.status_code == 202, response.json
    assert response.json["event_ids"] == [event["event_id"]]

    keys = raw_objects(local_stores, event_type)
    assert len(keys) == 1
    ts = dt.datetime.fromisoformat(event["ts"][:-1])
    assert keys[0].startswith(f"raw/events/{event_type}/{ts:%Y/%m/%d/%H}/")
    assert keys[0].endswith(".jsonl")
    lines = local_stores.lake.read_bytes(keys[0]).splitlines()
    assert len(lines) == 1
    checked = validate_event_line(lines[0], event_type)
    assert checked.problems == ()
    assert checked.record["event_id"] == event["event_id"]


def test_pageview_without_referrer_is_completed_for_the_lake(client, auth, local_stores):
    event = pageview()
    del event["referrer"]
    assert client.post("/api/ingest/pageview", json=event, headers=auth).status_code == 202
    line = local_stores.lake.read_bytes(raw_objects(local_stores, "pageview")[0]).strip()
    assert json.loads(line)["referrer"] is None
    assert validate_event_line(line, "pageview").problems == ()


def test_400_lists_every_bad_field(client, auth, local_stores):
    bad = purchase(quantity=0, amount="12", currency="usd", surprise=1)
    del bad["order_id"]
    del bad["ts"]
    response = client.post("/api/ingest/purchase", json=bad, headers=auth)
    assert response.status_code == 400
    found = {(e["path"], e["code"]) for e in response.json["errors"]}
    assert found == {
        ("order_id", "required"),
        ("ts", "required"),
        ("quantity", "minimum"),
        ("amount", "type"),
        ("currency", "pattern"),
        ("surprise", "unexpected"),
    }
    assert raw_objects(local_stores, "purchase") == []


def test_400_for_time_outside_the_window_and_impossible_dates(client, auth):
    now = dt.datetime.now(dt.UTC)
    for ts, code in [
        (utc_ts(now + dt.timedelta(days=3)), "in_future"),
        (utc_ts(now - dt.timedelta(days=45)), "too_old"),
        ("2026-02-30T10:00:00Z", "invalid_date"),
        ("2026-11-01 10:00:00", "pattern"),
    ]:
        response = client.post("/api/ingest/pageview", json=pageview(ts=ts), headers=auth)
        assert response.status_code == 400
        assert [(e["path"], e["code"]) for e in response.json["errors"]] == [("ts", code)]


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'{"amount": NaN}',
        b"[1, 2]",
        b'"text"',
        "\u00e9".encode("latin-1"),
        b"[" * 5000,
    ],
)
def test_400_for_bodies_that_are_not_a_json_object(client, auth, body):
    response = client.post(
        "/api/ingest/purchase", data=body, headers={**auth, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json["errors"]


def test_lone_surrogates_and_deep_properties_are_refused(client, auth):
    headers = {**auth, "Content-Type": "application/json"}
    body = json.dumps(custom(name="placeholder")).replace('"placeholder"', '"\\ud800"')
    response = client.post("/api/ingest/event", data=body, headers=headers)
    assert response.status_code == 400
    assert [(e["path"], e["code"]) for e in response.json["errors"]] == [
        ("name", "invalid_unicode")
    ]
    deep: dict = {}
    for _ in range(40):
        deep = {"d": deep}
    response = client.post("/api/ingest/event", json=custom(properties=deep), headers=auth)
    assert response.status_code == 400
    assert response.json["errors"][0]["code"] == "too_deep"


def test_batch_accepts_mixed_types_and_lists_bad_lines(client, auth, local_stores):
    good = [
        {**pageview(), "event_type": "pageview"},
        {**purchase(), "event_type": "purchase"},
        {**custom(), "event_type": "custom"},
    ]
    headers = {**auth, "Content-Type": "application/x-ndjson"}
    response = client.post("/api/ingest/batch", data=ndjson(good), headers=headers)
    assert response.status_code == 202
    assert response.json["accepted"] == 3
    assert all(len(raw_objects(local_stores, t)) == 1 for t in ("pageview", "purchase", "custom"))

    bad = [
        {**pageview(), "event_type": "pageview"},
        {**pageview(page=""), "event_type": "pageview"},
        {**purchase(), "event_type": "refund"},
    ]
    body = ndjson(bad[:2]) + b"\n{oops\n" + ndjson(bad[2:])
    response = client.post("/api/ingest/batch", data=body, headers=headers)
    assert response.status_code == 400
    found = {(e["path"], e["code"]) for e in response.json["errors"]}
    assert found == {
        ("lines[1].page", "min_length"),
        ("lines[3]", "not_json"),
        ("lines[4].event_type", "enum"),
    }
    # Nothing of a refused batch is stored, not even its good line.
    assert len(raw_objects(local_stores, "pageview")) == 1


def test_batch_spanning_hours_writes_one_object_per_hour(client, auth, local_stores):
    now = dt.datetime.now(dt.UTC).replace(minute=30)
    events = [
        {**pageview(ts=utc_ts(now - dt.timedelta(hours=h))), "event_type": "pageview"}
        for h in (0, 0, 1, 2)
    ]
    headers = {**auth, "Content-Type": "application/x-ndjson"}
    assert client.post("/api/ingest/batch", data=ndjson(events), headers=headers).status_code == 202
    keys = raw_objects(local_stores, "pageview")
    assert len(keys) == 3
    lines = sum(len(local_stores.lake.read_bytes(k).splitlines()) for k in keys)
    assert lines == 4


def test_413_above_the_size_limits(local_stores, token):
    server = Flask("limits")
    register_ingest(server, local_stores, IngestSettings(max_batch_bytes=2_000))
    client = server.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    big = custom(properties={"blob": "x" * 70_000})
    assert client.post("/api/ingest/event", json=big, headers=auth).status_code == 413
    events = [{**pageview(), "event_type": "pageview"} for _ in range(20)]
    response = client.post(
        "/api/ingest/batch",
        data=ndjson(events),
        headers={**auth, "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 413
    assert response.json["limit"] == 2_000
    assert raw_objects(local_stores, "pageview") == []


def test_400_when_a_batch_has_too_many_events(local_stores, token):
    server = Flask("count-limit")
    register_ingest(server, local_stores, IngestSettings(max_batch_events=3))
    events = [{**pageview(), "event_type": "pageview"} for _ in range(4)]
    response = server.test_client().post(
        "/api/ingest/batch",
        data=ndjson(events),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 400
    assert response.json["errors"][0]["code"] == "too_many"


@pytest.mark.parametrize(
    ("route", "headers"),
    [
        ("pageview", {"Content-Type": "text/plain"}),
        ("pageview", {"Content-Type": "application/x-ndjson"}),
        ("pageview", {"Content-Type": "application/json; charset=latin-1"}),
        ("pageview", {"Content-Type": "application/json", "Content-Encoding": "gzip"}),
        ("pageview", {}),
        ("batch", {"Content-Type": "application/json"}),
    ],
)
def test_415_for_a_wrong_content_type(client, auth, route, headers):
    body = json.dumps({**pageview(), "event_type": "pageview"})
    response = client.post(f"/api/ingest/{route}", data=body, headers={**auth, **headers})
    assert response.status_code == 415


def test_json_with_utf8_charset_is_fine(client, auth):
    response = client.post(
        "/api/ingest/pageview",
        data=json.dumps(pageview()),
        headers={**auth, "Content-Type": "application/json; charset=UTF-8"},
    )
    assert response.status_code == 202


def test_401_without_or_with_a_bad_key_and_403_without_the_scope(client, local_stores, token):
    event = pageview()
    assert client.post("/api/ingest/pageview", json=event).status_code == 401
    wrong = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    response = client.post(
        "/api/ingest/pageview", json=event, headers={"Authorization": f"Bearer {wrong}"}
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    upload_only = create_key(local_stores.records, "device", ["upload"], created_by="t").token
    response = client.post("/api/ingest/pageview", json=event, headers={"X-API-Key": upload_only})
    assert response.status_code == 403
    assert raw_objects(local_stores, "pageview") == []


def test_a_revoked_key_is_refused_once_the_cache_lapses(local_stores):
    server = Flask("revoke")
    register_ingest(server, local_stores, IngestSettings(api_key_cache_seconds=0))
    created = create_key(local_stores.records, "k", ["ingest"], created_by="t")
    auth = {"Authorization": f"Bearer {created.token}"}
    client = server.test_client()
    assert client.post("/api/ingest/pageview", json=pageview(), headers=auth).status_code == 202
    revoke_key(local_stores.records, created.key.key_id, revoked_by="t")
    assert client.post("/api/ingest/pageview", json=pageview(), headers=auth).status_code == 401


def test_429_with_retry_after_past_the_keys_rate(local_stores):
    clock = FakeClock(time.time())
    server = Flask("rate")
    register_ingest(server, local_stores, IngestSettings(), clock=clock)
    created = create_key(
        local_stores.records, "slow", ["ingest"], created_by="t", rate_per_second=0.5, rate_burst=2
    )
    auth = {"Authorization": f"Bearer {created.token}"}
    client = server.test_client()
    statuses = [
        client.post("/api/ingest/pageview", json=pageview(), headers=auth).status_code
        for _ in range(3)
    ]
    assert statuses == [202, 202, 429]
    refused = client.post("/api/ingest/pageview", json=pageview(), headers=auth)
    assert refused.status_code == 429
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 2  # one token every 2 s
    clock.advance(retry_after)
    assert client.post("/api/ingest/pageview", json=pageview(), headers=auth).status_code == 202
    # Another key has its own bucket.
    other = create_key(local_stores.records, "other", ["ingest"], created_by="t").token
    response = client.post(
        "/api/ingest/pageview", json=pageview(), headers={"Authorization": f"Bearer {other}"}
    )
    assert response.status_code == 202


def test_a_repeated_event_is_accepted_once(client, auth, local_stores):
    event = purchase()
    first = client.post("/api/ingest/purchase", json=event, headers=auth)
    second = client.post("/api/ingest/purchase", json=event, headers=auth)
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json == {
        "accepted": 0,
        "duplicates": 1,
        "event_ids": [],
        "duplicate_ids": [event["event_id"]],
    }
    assert len(raw_objects(local_stores, "purchase")) == 1


def test_idempotency_key_supplies_the_id_of_events_without_one(client, auth, local_stores):
    event = pageview()
    del event["event_id"]
    missing = client.post("/api/ingest/pageview", json=event, headers=auth)
    assert missing.status_code == 400
    assert [(e["path"], e["code"]) for e in missing.json["errors"]] == [("event_id", "required")]

    headers = {**auth, "Idempotency-Key": "order-7-attempt"}
    first = client.post("/api/ingest/pageview", json=event, headers=headers)
    retry = client.post("/api/ingest/pageview", json=event, headers=headers)
    assert first.status_code == 202 and retry.status_code == 200
    assert retry.json["duplicate_ids"] == first.json["event_ids"]
    other = client.post(
        "/api/ingest/pageview", json=event, headers={**auth, "Idempotency-Key": "another"}
    )
    assert other.status_code == 202
    assert len(raw_objects(local_stores, "pageview")) == 2
    bad = client.post(
        "/api/ingest/pageview", json=event, headers={**auth, "Idempotency-Key": "a b"}
    )
    assert bad.status_code == 400


def test_duplicates_inside_one_batch_count_once(client, auth, local_stores):
    event = {**pageview(), "event_type": "pageview"}
    headers = {**auth, "Content-Type": "application/x-ndjson"}
    response = client.post("/api/ingest/batch", data=ndjson([event, event]), headers=headers)
    assert (response.json["accepted"], response.json["duplicates"]) == (1, 1)
    key = raw_objects(local_stores, "pageview")[0]
    assert len(local_stores.lake.read_bytes(key).splitlines()) == 1


def test_a_repeat_that_slipped_past_the_check_is_still_counted_once(client, auth, local_stores):
    """Two racing identical requests can both be written; compaction keeps one."""
    event = pageview()
    assert client.post("/api/ingest/pageview", json=event, headers=auth).status_code == 202
    ts = dt.datetime.fromisoformat(event["ts"][:-1])
    kind = idempotency_kind(ts.date(), "pageview", event["event_id"])
    local_stores.records.delete(kind, f"pageview/{event['event_id']}")  # as if they raced
    assert client.post("/api/ingest/pageview", json=event, headers=auth).status_code == 202
    assert len(raw_objects(local_stores, "pageview")) == 2

    compact_events(local_stores)
    ts = dt.datetime.fromisoformat(event["ts"][:-1])
    key = layout.events_key("pageview", ts.date().isoformat(), ts.hour)
    ids = pq.read_table(local_stores.lake.root / key).column("event_id").to_pylist()
    assert ids == [event["event_id"]]


class _BrokenLake:
    def __init__(self, lake) -> None:
        self._lake = lake
        self.broken = True

    def __getattr__(self, name):
        return getattr(self._lake, name)

    def write_bytes(self, key: str, data: bytes) -> None:
        if self.broken:
            raise StoreUnavailable("disk full")
        self._lake.write_bytes(key, data)


def test_503_when_the_raw_write_fails_and_a_retry_then_succeeds(local_stores, token):
    lake = _BrokenLake(local_stores.lake)
    stores = dataclasses.replace(local_stores, lake=lake)
    server = Flask("broken")
    register_ingest(server, stores, IngestSettings())
    client = server.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    event = pageview()
    response = client.post("/api/ingest/pageview", json=event, headers=auth)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    lake.broken = False
    retry = client.post("/api/ingest/pageview", json=event, headers=auth)
    assert retry.status_code == 202  # the failed attempt did not mark the event as seen


def test_openapi_document_describes_every_endpoint(client):
    document = client.get("/api/openapi.json").json
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {
        "/api/ingest/purchase",
        "/api/ingest/pageview",
        "/api/ingest/event",
        "/api/ingest/batch",
    }
    purchase_op = document["paths"]["/api/ingest/purchase"]["post"]
    assert {"202", "400", "401", "413", "415", "429"} <= set(purchase_op["responses"])
    schema = purchase_op["requestBody"]["content"]["application/json"]["schema"]
    assert "amount" in schema["required"]
    assert "Retry-After" in purchase_op["responses"]["429"]["headers"]


class _DownRecords:
    """A records store that cannot be reached."""

    def __getattr__(self, name):
        def unavailable(*args, **kwargs):
            raise StoreUnavailable("records table unreachable")

        return unavailable


def test_503_not_500_when_the_key_store_is_down(local_stores, token):
    stores = dataclasses.replace(local_stores, records=_DownRecords())
    server = Flask("keys-down")
    register_ingest(server, stores, IngestSettings())
    response = server.test_client().post(
        "/api/ingest/pageview", json=pageview(), headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 503
    assert raw_objects(local_stores, "pageview") == []


def test_the_rate_limiter_lets_requests_through_when_its_store_is_down():
    from data_access.ratelimit import RateLimiter

    decision = RateLimiter(_DownRecords()).check("k", 1.0, 1)
    assert decision.allowed
    with pytest.raises(StoreUnavailable):
        RateLimiter(_DownRecords(), fail_open=False).check("k", 1.0, 1)
