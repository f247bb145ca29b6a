"""The upload event path on real servers: device PUT -> S3 notification -> SQS -> the Lambda.

moto's server plays S3 and SQS: the lake bucket notifies the upload queue of every object
under ``raw/screen_time/`` (moto sends S3's ``s3:TestEvent`` when the notification is set,
and URL-encodes keys as S3 does), and the queue has a dead-letter queue with a redrive
policy, as deploy/cloudformation.yaml makes them. The tables are on DynamoDB Local.

Lambda itself cannot run here, so ``EventSource`` does what the SQS event source mapping
does, with the real queue: receive a batch, build the Lambda event from exactly those
messages, invoke ``pipeline.lambda_handlers.sqs_handler`` with it, and delete the messages
the response does not name in ``batchItemFailures``. Whatever SQS does next (redelivery
after the visibility timeout, the move to the dead-letter queue) is SQS's own behaviour.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pandas as pd
import pytest
import requests

from data_access import aws, layout
from data_access.queries import FleetAppsQuery, FleetDailyQuery
from data_access.settings import DataSettings
from data_access.stores import Stores
from devtools.servers import (
    TEST_ACCESS_KEY,
    TEST_REGION,
    TEST_SECRET_KEY,
    DynamoDBLocal,
    MotoServer,
)
from pipeline import lambda_handlers, process
from pipeline.bootstrap import bootstrap
from pipeline.compact import compact_date
from pipeline.generate import customer_id, customer_profile, screen_time_upload
from pipeline.reconcile import reconcile
from pipeline.rollup import rollup_screen_time
from tests.plugins.servers import (
    AwsClients,
    UploadQueues,
    create_upload_queues,
    delete_upload_queues,
    remove_aws_resources,
)

pytestmark = pytest.mark.aws

TODAY = dt.datetime.now(dt.UTC).date()
SEED = 17
JSON_TYPE = "application/json"
MAX_RECEIVES = 3  # the queue's maxReceiveCount (the stack's UploadMaxReceiveCount)
DEADLINE_SECONDS = 30.0


class LambdaContext:
    def get_remaining_time_in_millis(self) -> int:
        return 50_000


@dataclass
class EventSource:
    """Lambda's SQS event source mapping, step by step, against the real queue."""

    sqs: Any
    queues: UploadQueues
    invocations: list[tuple[list[dict], dict]]

    def poll(self, visibility: int = 30, max_messages: int = 10) -> list[dict]:
        response = self.sqs.receive_message(
            QueueUrl=self.queues.url,
            MaxNumberOfMessages=max_messages,
            VisibilityTimeout=visibility,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["All"],
        )
        return response.get("Messages", [])

    def event(self, messages: list[dict]) -> dict:
        """The Lambda event for these messages, in the shape the event source mapping sends."""
        return {
            "Records": [
                {
                    "messageId": message["MessageId"],
                    "receiptHandle": message["ReceiptHandle"],
                    "body": message["Body"],
                    "attributes": dict(message.get("Attributes", {})),
                    "messageAttributes": {},
                    "md5OfBody": message["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.queues.arn,
                    "awsRegion": TEST_REGION,
                }
                for message in messages
            ]
        }

    def invoke(self, messages: list[dict], *, delete: bool = True) -> dict:
        """Invoke the handler; then delete what succeeded, unless the "worker" dies first."""
        result = lambda_handlers.sqs_handler(self.event(messages), LambdaContext())
        self.invocations.append((messages, result))
        failed = {failure["itemIdentifier"] for failure in result["batchItemFailures"]}
        assert failed <= {message["MessageId"] for message in messages}, result
        done = [message for message in messages if message["MessageId"] not in failed]
        if delete and done:
            response = self.sqs.delete_message_batch(
                QueueUrl=self.queues.url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(done)
                ],
            )
            assert not response.get("Failed"), response
        return result

    def drain(self) -> list[tuple[list[dict], dict]]:
        """Invoke for every visible message until the queue answers a long poll with nothing."""
        start = len(self.invocations)
        deadline = time.monotonic() + DEADLINE_SECONDS
        while messages := self.poll():
            assert time.monotonic() < deadline, "the queue did not drain"
            self.invoke(messages)
        return self.invocations[start:]

    def run_until(self, done: Callable[[], bool], visibility: int = 30) -> None:
        """Invoke for whatever arrives until ``done()``, or fail at the deadline."""
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not done():
            assert time.monotonic() < deadline, "condition not met in time"
            messages = self.poll(visibility=visibility)
            if messages:
                self.invoke(messages)


@dataclass
class EventPath:
    settings: DataSettings
    stores: Stores
    sqs: Any
    queues: UploadQueues
    source: EventSource
    started: float

    def counted(self) -> Counter[str]:
        """The processing counters of every hour since the test started, added up."""
        hour = dt.datetime.fromtimestamp(self.started, dt.UTC).replace(
            minute=0, second=0, microsecond=0
        )
        names = []
        while hour <= dt.datetime.now(dt.UTC):
            names.append(layout.pipeline_counters(hour.strftime("%Y-%m-%dT%H")))
            hour += dt.timedelta(hours=1)
        total: Counter[str] = Counter()
        for fields in self.stores.state.counters(names).values():
            total.update(fields)
        return total


def _clients(settings: DataSettings) -> tuple[AwsClients, Any]:
    session = boto3.Session(
        aws_access_key_id=TEST_ACCESS_KEY,
        aws_secret_access_key=TEST_SECRET_KEY,
        region_name=settings.aws_region,
    )
    clients = AwsClients(
        s3=aws.s3_client(settings, session), dynamodb=aws.dynamodb_client(settings, session)
    )
    return clients, aws.sqs_client(settings, session)


@pytest.fixture
def path(
    moto_server: MotoServer,
    dynamodb_local: DynamoDBLocal,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[EventPath]:
    """A fresh bucket with its notification, queues and tables; the environment the function
    has, applied to this process, and no warm Lambda stores."""
    suffix = uuid.uuid4().hex[:10]
    queues = create_upload_queues(
        moto_server.client("sqs", timeout=5.0),
        f"mc-uploads-{suffix}",
        max_receive_count=MAX_RECEIVES,
    )
    no_config = tmp_path_factory.mktemp("aws-config") / "none"
    env = {
        "DATA_BACKEND": "aws",
        "AWS_ACCESS_KEY_ID": TEST_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": TEST_SECRET_KEY,
        "AWS_REGION": TEST_REGION,
        "AWS_DEFAULT_REGION": TEST_REGION,
        "AWS_ENDPOINT_URL_S3": moto_server.endpoint,
        "AWS_ENDPOINT_URL_SQS": moto_server.endpoint,
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_local.endpoint,
        "AWS_READ_TIMEOUT_SECONDS": "10",
        "S3_BUCKET": f"mc-events-{suffix}",
        "TABLE_PREFIX": f"mc-events-{suffix}",
        "UPLOAD_QUEUE_URL": queues.url,
        "UPLOAD_DLQ_URL": queues.dlq_url,
        "UPLOAD_MAX_ATTEMPTS": str(MAX_RECEIVES),
        "UPLOAD_RETRY_SECONDS": "1",  # a failed try comes back soon
        "STATE_DB": str(tmp_path_factory.mktemp("aws-state") / "state.sqlite"),
        "AWS_CONFIG_FILE": str(no_config),
        "AWS_SHARED_CREDENTIALS_FILE": str(no_config),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # The handler builds its stores from this environment, as a cold container does.
    monkeypatch.setattr(lambda_handlers, "_warm", {})
    settings = DataSettings.from_env(env)
    clients, sqs = _clients(settings)
    bootstrap(settings, s3=clients.s3, dynamodb=clients.dynamodb)
    clients.s3.put_bucket_notification_configuration(
        Bucket=settings.s3_bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "Id": "raw-screen-time-uploads",
                    "QueueArn": queues.arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {
                        "Key": {
                            "FilterRules": [{"Name": "prefix", "Value": layout.RAW_SCREEN_TIME}]
                        }
                    },
                }
            ]
        },
    )
    stores = aws.build_aws_stores(settings, s3=clients.s3, dynamodb=clients.dynamodb, sqs=sqs)
    yield EventPath(
        settings=settings,
        stores=stores,
        sqs=sqs,
        queues=queues,
        source=EventSource(sqs, queues, []),
        started=time.time(),
    )
    stores.lake.close()  # type: ignore[attr-defined]
    lambda_handlers._warm.clear()
    delete_upload_queues(sqs, queues)
    remove_aws_resources(settings, clients)


def device_put(stores: Stores, key: str, body: bytes) -> None:
    """What a device does with the URL ``POST /api/uploads`` hands it."""
    url = stores.lake.presign_put(key, expires=300, content_type=JSON_TYPE)  # type: ignore[attr-defined]
    response = requests.put(url, data=body, headers={"Content-Type": JSON_TYPE}, timeout=10)
    assert response.status_code == 200, response.text


def _has_sessions(body: bytes | None) -> bool:
    return body is not None and bool(json.loads(body)["sessions"])


def one_upload(number: int = 3) -> tuple[str, str, bytes]:
    """(customer id, date, body) of a generated day that has sessions."""
    profile = customer_profile(SEED, number, TODAY)
    for offset in range(1, 30):
        day = TODAY - dt.timedelta(days=offset)
        body = screen_time_upload(SEED, profile, day)
        if body is not None and _has_sessions(body):
            return customer_id(number), day.isoformat(), body
    raise AssertionError("the generator produced no day with sessions")


def corrected_upload(number: int = 5) -> tuple[str, str, bytes, bytes]:
    """(customer id, date, first body, corrected body): one customer-day, two contents."""
    first, second = customer_profile(SEED, number, TODAY), customer_profile(SEED + 1, number, TODAY)
    for offset in range(1, 30):
        day = TODAY - dt.timedelta(days=offset)
        old = screen_time_upload(SEED, first, day)
        new = screen_time_upload(SEED + 1, second, day)
        if old is not None and new is not None and _has_sessions(old) and _has_sessions(new):
            return customer_id(number), day.isoformat(), old, new
    raise AssertionError("the generator produced no day with two different uploads")


def keys_of(message: dict) -> list[str]:
    body = json.loads(message["Body"])
    return [urllib.parse.unquote_plus(r["s3"]["object"]["key"]) for r in body.get("Records", [])]


def is_test_event(message: dict) -> bool:
    try:
        return json.loads(message["Body"]).get("Event") == "s3:TestEvent"
    except ValueError:
        return False


# ------------------------------------------------------------------------------ the path


def test_a_device_upload_is_processed_through_the_queue(path: EventPath):
    customer, date, body = one_upload()
    key = layout.raw_upload_key(customer, date)
    device_put(path.stores, key, body)

    invocations = path.source.drain()
    messages = [message for batch, _ in invocations for message in batch]
    # S3's test event (sent when the notification was set) is consumed, not retried.
    assert [m for m in messages if is_test_event(m)], "moto sent no s3:TestEvent"
    assert [keys_of(m) for m in messages if not is_test_event(m)] == [[key]]
    assert all(result == {"batchItemFailures": []} for _, result in invocations)

    record = path.stores.index.get(customer, date)
    assert record is not None
    assert record.raw_key == key
    assert record.content_hash == hashlib.sha256(body).hexdigest()
    assert path.stores.lake.exists(record.object_key)
    counted = path.counted()
    assert (counted["processed"], counted["raw_bytes"]) == (1, len(body))
    assert counted["quarantined"] == 0
    assert path.stores.queue.depth() == 0
    assert path.stores.queue.dead_letters() == []


def test_a_message_delivered_twice_changes_nothing(path: EventPath):
    customer, date, body = one_upload()
    key = layout.raw_upload_key(customer, date)
    device_put(path.stores, key, body)

    # The first delivery is processed, but the delete never happens (the poller died).
    first: list[dict] = []
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not [m for m in first if key in keys_of(m)]:
        assert time.monotonic() < deadline, "the upload's notification did not arrive"
        batch = path.source.poll(visibility=1)
        if batch:
            path.source.invoke(batch, delete=False)
            first += batch
    [message] = [m for m in first if key in keys_of(m)]
    record = path.stores.index.get(customer, date)
    assert record is not None
    counted = path.counted()
    assert counted["processed"] == 1

    # SQS delivers it again after the visibility timeout: the same message, a second time.
    again: list[dict] = []
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not [m for m in again if m["MessageId"] == message["MessageId"]]:
        assert time.monotonic() < deadline, "the message was not delivered again"
        batch = path.source.poll()
        if batch:
            path.source.invoke(batch)
            again += batch
    [redelivered] = [m for m in again if m["MessageId"] == message["MessageId"]]
    assert redelivered["Attributes"]["ApproximateReceiveCount"] == "2"
    # S3 delivers at least once too: the same notification as a new message.
    path.sqs.send_message(QueueUrl=path.queues.url, MessageBody=message["Body"])
    path.source.drain()

    assert path.stores.index.get(customer, date) == record
    assert path.counted() == counted
    assert path.stores.queue.depth() == 0
    assert path.stores.queue.dead_letters() == []


def test_two_workers_racing_on_one_key_commit_once(path: EventPath):
    customer, date, body = one_upload()
    key = layout.raw_upload_key(customer, date)
    device_put(path.stores, key, body)
    # Two workers with their own clients, as two containers have.
    workers = [aws.build_aws_stores(path.settings) for _ in range(2)]
    start = threading.Barrier(len(workers))
    statuses: list[str] = []
    errors: list[BaseException] = []

    def work(stores: Stores) -> None:
        try:
            start.wait(timeout=30)
            statuses.extend(o.status for o in process.process_keys(stores, [key]))
        except BaseException as exc:  # surfaced in the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(stores,)) for stores in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(statuses) == ["duplicate", "processed"]
    record = path.stores.index.get(customer, date)
    assert record is not None and record.content_hash == hashlib.sha256(body).hexdigest()
    assert path.counted()["processed"] == 1

    # The notification arrives after both: a duplicate, counted nowhere.
    path.source.drain()
    assert path.stores.index.get(customer, date) == record
    assert path.counted()["processed"] == 1
    assert reconcile(path.stores).ok


def test_a_worker_killed_mid_batch_loses_nothing_and_counts_nothing_twice(path: EventPath):
    uploads = [one_upload(number) for number in (3, 4)]
    keys = [layout.raw_upload_key(customer, date) for customer, date, _ in uploads]
    for key, (_, _, body) in zip(keys, uploads, strict=True):
        device_put(path.stores, key, body)

    # A worker takes the batch, processes the first upload and dies: no delete, no response.
    taken: list[dict] = []
    deadline = time.monotonic() + DEADLINE_SECONDS
    while {k for m in taken for k in keys_of(m)} != set(keys):
        assert time.monotonic() < deadline, "the notifications did not arrive"
        taken += path.source.poll(visibility=2)
    assert [o.status for o in process.process_keys(path.stores, keys[:1])] == ["processed"]
    ids = {m["MessageId"] for m in taken if not is_test_event(m)}

    # After the visibility timeout SQS delivers the batch again, to a live worker.
    path.source.run_until(lambda: path.stores.queue.depth() == 0)
    redelivered = [
        message
        for batch, result in path.source.invocations
        for message in batch
        if message["MessageId"] in ids
    ]
    assert sorted(m["MessageId"] for m in redelivered) == sorted(ids)
    assert all(m["Attributes"]["ApproximateReceiveCount"] == "2" for m in redelivered)
    assert all(result == {"batchItemFailures": []} for _, result in path.source.invocations)

    for (customer, date, body), key in zip(uploads, keys, strict=True):
        record = path.stores.index.get(customer, date)
        assert record is not None and record.raw_key == key
        assert record.content_hash == hashlib.sha256(body).hexdigest()
    counted = path.counted()
    assert counted["processed"] == 2, counted
    assert counted["raw_bytes"] == sum(len(body) for _, _, body in uploads)
    report = reconcile(path.stores)
    assert report.ok, report.problems()
    assert report.processed == 2


def test_a_poison_message_ends_in_the_dead_letter_queue_with_its_reason(path: EventPath):
    poison_id = path.sqs.send_message(QueueUrl=path.queues.url, MessageBody="{not json")[
        "MessageId"
    ]
    deliveries = 0
    deadline = time.monotonic() + DEADLINE_SECONDS
    # Each delivery fails; SQS moves the message once it was received MAX_RECEIVES times.
    while not path.stores.queue.dead_letters():
        assert time.monotonic() < deadline, "the poison message was never dead-lettered"
        batch = path.source.poll(visibility=1)
        if not batch:
            continue
        result = path.source.invoke(batch)
        failed = [f["itemIdentifier"] for f in result["batchItemFailures"]]
        poisoned = [m for m in batch if m["MessageId"] == poison_id]
        assert failed == [m["MessageId"] for m in poisoned], "only the poison message fails"
        deliveries += len(poisoned)
    assert deliveries == MAX_RECEIVES

    [(message_id, reason)] = path.stores.queue.dead_letters()
    assert message_id == poison_id
    assert "JSON" in reason, reason
    assert path.stores.queue.depth() == 0
    # Still there: reading the dead letters does not consume them.
    assert path.stores.queue.dead_letters() == [(message_id, reason)]
    dead = path.sqs.get_queue_attributes(
        QueueUrl=path.queues.dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert dead["Attributes"]["ApproximateNumberOfMessages"] == "1"
    assert path.counted()["processed"] == 0


def test_a_corrected_reupload_replaces_its_old_contribution(path: EventPath, local_stores: Stores):
    customer, date, old, new = corrected_upload()
    key = layout.raw_upload_key(customer, date)
    day = dt.date.fromisoformat(date)
    # Sessions after midnight count on the next day.
    daily = FleetDailyQuery(day - dt.timedelta(days=1), day + dt.timedelta(days=1))
    apps = FleetAppsQuery(daily.start, daily.end)

    device_put(path.stores, key, old)
    path.source.drain()
    rollup_screen_time(path.stores, settle_seconds=0)
    before = daily.load(path.stores)
    assert int(before["total_seconds"].sum()) > 0

    device_put(path.stores, key, new)
    path.source.drain()
    record = path.stores.index.get(customer, date)
    assert record is not None and record.content_hash == hashlib.sha256(new).hexdigest()
    rollup_screen_time(path.stores, settle_seconds=0)
    after = daily.load(path.stores)
    assert path.counted()["processed"] == 2  # first version, then the correction

    # The new content alone, processed by the local worker on the embedded backend.
    local_stores.lake.write_bytes(key, new)
    local_stores.queue.send([key])
    assert process.drain(local_stores).processed == 1
    rollup_screen_time(local_stores, settle_seconds=0)
    pd.testing.assert_frame_equal(after, daily.load(local_stores))
    pd.testing.assert_frame_equal(apps.load(path.stores), apps.load(local_stores))
    assert not after.equals(before), "the correction changed nothing: a useless test"
    # The old version's rows go at compaction, now that the summaries no longer hold it.
    assert compact_date(path.stores, date)
    bucket = layout.screen_time_bucket(customer)
    [part] = path.stores.lake.list(layout.screen_time_bucket_prefix(date, bucket))
    held = set(path.stores.lake.read_table([part.key]).column("content_hash").to_pylist())
    assert held == {layout.row_hash(hashlib.sha256(new).hexdigest())}
    report = reconcile(path.stores)
    assert report.ok, report.problems()
