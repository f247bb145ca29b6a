"""Device uploads: an API key with the upload scope gets somewhere to PUT one customer-day."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import requests
from flask import Flask

from data_access import layout
from data_access.apikeys import create_key
from data_access.stores import Stores
from live.settings import IngestSettings
from live.uploads import register_uploads
from pipeline.process import drain

TODAY = dt.datetime.now(dt.UTC).date()


def upload_body(customer: str = "c0000001") -> bytes:
    day = TODAY.isoformat()
    session = {
        "app_id": "com.example.chat",
        "app_name": "Chat",
        "category": "Communication",
        "start": f"{day}T08:00:00",
        "end": f"{day}T08:10:00",
        "pickups": 1,
        "notifications": 2,
    }
    device = {"device_id": "d-1", "model": "Pixel 8", "os": "Android 15", "agent_version": "5.2"}
    body = {
        "schema_version": 1,
        "customer_id": customer,
        "date": day,
        "timezone": "Europe/Berlin",
        "device": device,
        "sessions": [session],
    }
    return json.dumps(body).encode()


def client_for(stores: Stores):
    server = Flask("uploads-under-test")
    register_uploads(server, stores, IngestSettings())
    return server.test_client()


@pytest.fixture
def keys(local_stores: Stores) -> dict[str, str]:
    upload = create_key(local_stores.records, "device", ["upload"], created_by="test")
    ingest = create_key(local_stores.records, "shop", ["ingest"], created_by="test")
    return {"upload": upload.token, "ingest": ingest.token}


def test_a_device_uploads_through_the_service_and_the_pipeline_processes_it(local_stores, keys):
    client = client_for(local_stores)
    auth = {"Authorization": f"Bearer {keys['upload']}"}
    start = client.post(
        "/api/uploads", json={"customer_id": "c0000001", "date": TODAY.isoformat()}, headers=auth
    )
    assert start.status_code == 201
    target = start.get_json()
    assert target["method"] == "PUT"
    assert target["key"] == layout.raw_upload_key("c0000001", TODAY.isoformat())

    path = target["url"].removeprefix("http://localhost")
    put = client.put(path, data=upload_body(), headers={**auth, **target["headers"]})
    assert put.status_code == 201
    assert local_stores.lake.read_bytes(target["key"]) == upload_body()
    summary = drain(local_stores)
    assert summary.processed == 1
    assert local_stores.index.get("c0000001", TODAY.isoformat()) is not None


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"customer_id": "../etc", "date": "2026-01-01"}, 400),
        ({"customer_id": "c1/../../x", "date": "2026-01-01"}, 400),
        ({"customer_id": "c\x00", "date": "2026-01-01"}, 400),
        ({"customer_id": "c1", "date": "2026-13-01"}, 400),
        ({"customer_id": "c1", "date": "9999-01-01"}, 400),
        ({"customer_id": "c1"}, 400),
        (["not", "an", "object"], 400),
    ],
)
def test_bad_requests_are_refused_with_a_reason(local_stores, keys, body, status):
    client = client_for(local_stores)
    response = client.post(
        "/api/uploads", json=body, headers={"Authorization": f"Bearer {keys['upload']}"}
    )
    assert response.status_code == status
    assert response.get_json()["error"]
    assert not list(local_stores.lake.list("raw/"))


def test_keys_are_checked_on_both_steps(local_stores, keys):
    client = client_for(local_stores)
    body = {"customer_id": "c0000001", "date": TODAY.isoformat()}
    assert client.post("/api/uploads", json=body).status_code == 401
    wrong_scope = {"Authorization": f"Bearer {keys['ingest']}"}
    assert client.post("/api/uploads", json=body, headers=wrong_scope).status_code == 403
    path = f"/api/uploads/c0000001/{TODAY.isoformat()}.json"
    assert client.put(path, data=b"{}").status_code == 401
    assert client.put(path, data=b"{}", headers=wrong_scope).status_code == 403
    assert not list(local_stores.lake.list("raw/"))


@pytest.mark.aws
def test_on_s3_the_device_gets_a_presigned_url_and_puts_straight_to_the_bucket(aws_stores):
    token = create_key(aws_stores.records, "device", ["upload"], created_by="test").token
    client = client_for(aws_stores)
    start = client.post(
        "/api/uploads",
        json={"customer_id": "c0000002", "date": TODAY.isoformat()},
        headers={"X-Api-Key": token},
    )
    assert start.status_code == 201
    target = start.get_json()
    assert "X-Amz-Signature=" in target["url"]
    put = requests.put(
        target["url"], data=upload_body("c0000002"), headers=target["headers"], timeout=10
    )
    assert put.status_code == 200
    assert json.loads(aws_stores.lake.read_bytes(target["key"]))["customer_id"] == "c0000002"
    # The local PUT route is not for S3-backed deployments.
    assert client.put(f"/api/uploads/c0000002/{TODAY}.json", data=b"{}").status_code == 404
