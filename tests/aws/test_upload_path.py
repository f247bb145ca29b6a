"""The device upload path on real servers: presigned PUT to S3, then the ObjectCreated event.

A device PUTs its day's JSON to a presigned URL (``S3Lake.presign_put``); S3 notifies
``pipeline.process.handle_s3_event`` with the key URL-encoded, as S3 sends it. The handler
writes the processed Parquet to S3, the index record and the new data version to DynamoDB;
a bad upload lands in ``quarantine/`` with its reason, and a redelivered event changes nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import urllib.parse
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from data_access import layout
from data_access.queries import CustomerTrendQuery
from data_access.service import DataService
from data_access.settings import DataSettings
from data_access.stores import Stores
from pipeline import schema
from pipeline.generate import customer_id, customer_profile, screen_time_upload
from pipeline.process import handle_s3_event, process_upload, quarantine_keys

pytestmark = pytest.mark.aws

TODAY = dt.datetime.now(dt.UTC).date()
SEED = 17
JSON_TYPE = "application/json"


def s3_event(bucket: str, key: str, body: bytes, name: str = "ObjectCreated:Put") -> dict:
    """An S3 event notification for one object, shaped as S3 delivers it to Lambda."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
                "eventName": name,
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "raw-screen-time-uploads",
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {
                        # S3 URL-encodes keys in events: a space becomes "+", "+" becomes "%2B".
                        "key": urllib.parse.quote_plus(key, safe="/"),
                        "size": len(body),
                        "eTag": hashlib.md5(body, usedforsecurity=False).hexdigest(),
                        "sequencer": uuid.uuid4().hex[:16].upper(),
                    },
                },
            }
        ]
    }


def device_put(stores: Stores, key: str, body: bytes) -> requests.Response:
    """What a device does with the URL ``POST /api/uploads`` hands it."""
    url = stores.lake.presign_put(key, expires=300, content_type=JSON_TYPE)  # type: ignore[attr-defined]
    return requests.put(url, data=body, headers={"Content-Type": JSON_TYPE}, timeout=10)


def one_upload(number: int = 3) -> tuple[str, str, bytes]:
    """(customer id, date, body) of a generated day that has sessions."""
    profile = customer_profile(SEED, number, TODAY)
    for offset in range(1, 30):
        day = TODAY - dt.timedelta(days=offset)
        body = screen_time_upload(SEED, profile, day)
        if body is not None and json.loads(body)["sessions"]:
            return customer_id(number), day.isoformat(), body
    raise AssertionError("the generator produced no day with sessions")


def test_presigned_put_then_s3_event_processes_into_s3_and_dynamodb(
    aws_stores: Stores, aws_settings: DataSettings, local_stores: Stores
):
    customer, date, body = one_upload()
    raw_key = layout.raw_upload_key(customer, date)
    trend = CustomerTrendQuery(
        dt.date.fromisoformat(date) - dt.timedelta(days=6), dt.date.fromisoformat(date), customer
    )
    # No version memo: each lookup asks DynamoDB, as a poll a second later would.
    service = DataService(aws_stores, aws_settings.model_copy(update={"version_memo_seconds": 0}))
    version_before = service.version(trend)

    response = device_put(aws_stores, raw_key, body)
    assert response.status_code == 200, response.text
    assert aws_stores.lake.read_bytes(raw_key) == body

    outcomes = handle_s3_event(s3_event(aws_settings.s3_bucket, raw_key, body), aws_stores)
    assert [(o.status, o.customer_id, o.date) for o in outcomes] == [("processed", customer, date)]

    # A processed part in S3, the same table the embedded backend makes from the same bytes
    # (but for the time each was written).
    processed_key = aws_stores.index.get(customer, date).object_key
    assert processed_key.startswith(f"processed/screen_time/date={date}/bucket=")
    in_s3 = pq.read_table(pa.BufferReader(aws_stores.lake.read_bytes(processed_key)))
    local_stores.lake.write_bytes(raw_key, body)
    assert process_upload(local_stores, raw_key).status == "processed"
    assert local_stores.index.get(customer, date).object_key == processed_key
    in_folder = local_stores.lake.read_table([processed_key])
    assert in_s3.drop_columns("uploaded_at").equals(in_folder.drop_columns("uploaded_at"))

    record = aws_stores.index.get(customer, date)
    assert record is not None
    assert record.object_key == processed_key
    assert record.raw_key == raw_key
    assert record.raw_bytes == len(body)
    assert record.rows == in_s3.num_rows
    assert record.content_hash == hashlib.sha256(body).hexdigest()
    assert [r.date for r in aws_stores.index.uploaded_since(record.uploaded_at - 1)] == [date]

    version_after = service.version(trend)
    assert version_after != version_before
    assert aws_stores.state.get(layout.VERSION_LATEST_UPLOAD) is not None
    trend_rows = service.fetch(trend).data
    assert trend_rows["day"].tolist() == [date]
    assert int(trend_rows["seconds"].sum()) == int(pa.compute.sum(in_s3["seconds"]).as_py())

    # S3 delivers at least once: the same event again is a duplicate and bumps nothing.
    again = handle_s3_event(s3_event(aws_settings.s3_bucket, raw_key, body), aws_stores)
    assert [o.status for o in again] == ["duplicate"]
    assert service.version(trend) == version_after


@pytest.mark.parametrize(
    ("key", "body", "code"),
    [
        # A valid key with a body cut short in transfer.
        (
            layout.raw_upload_key("c0000042", "2026-01-05"),
            b'{"customer_id": "c00',
            schema.TRUNCATED,
        ),
        # A key S3 URL-encodes in the event ("+" and a space): decoded, then refused.
        ("raw/screen_time/c 42+x/2026-01-05.json", b"{}", schema.UNSAFE_CUSTOMER_ID),
    ],
    ids=["truncated-json", "encoded-unsafe-key"],
)
def test_a_bad_upload_goes_to_quarantine_in_s3(
    aws_stores: Stores, aws_settings: DataSettings, key: str, body: bytes, code: str
):
    response = device_put(aws_stores, key, body)
    assert response.status_code == 200, response.text

    outcomes = handle_s3_event(s3_event(aws_settings.s3_bucket, key, body), aws_stores)
    assert [(o.status, o.raw_key) for o in outcomes] == [("quarantined", key)]
    reason_codes = outcomes[0].reason.split(",")  # type: ignore[union-attr]
    assert code in reason_codes

    copy_key, reason_key = quarantine_keys(key, hashlib.sha256(body).hexdigest())
    assert aws_stores.lake.read_bytes(copy_key) == body
    reason = json.loads(aws_stores.lake.read_bytes(reason_key))
    assert reason["raw_key"] == key
    assert reason["codes"] == reason_codes
    assert aws_stores.state.get(layout.VERSION_QUARANTINE) is not None
    assert not list(aws_stores.lake.list(layout.PROCESSED_SCREEN_TIME))


def test_a_presigned_url_is_good_for_its_own_key_only(aws_stores: Stores):
    customer, date, body = one_upload()
    url = aws_stores.lake.presign_put(  # type: ignore[attr-defined]
        layout.raw_upload_key(customer, date), expires=300, content_type=JSON_TYPE
    )
    other_day = f"/{(dt.date.fromisoformat(date) - dt.timedelta(days=1)).isoformat()}.json"
    tampered = url.replace(f"/{date}.json", other_day, 1)
    assert tampered != url
    response = requests.put(tampered, data=body, headers={"Content-Type": JSON_TYPE}, timeout=10)
    assert response.status_code == 403, response.text
    assert not list(aws_stores.lake.list(layout.RAW_SCREEN_TIME))
