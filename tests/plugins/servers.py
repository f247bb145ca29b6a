"""Pytest fixtures for the AWS tier: DynamoDB Local, SeaweedFS and moto (S3 + SQS) started once
per session.

Missing Java or npm packages fail the tests that need them, naming the install script;
they are never skipped silently.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from data_access import aws
from data_access.settings import DataSettings
from data_access.stores import Stores
from devtools.servers import (
    TEST_ACCESS_KEY,
    TEST_REGION,
    TEST_SECRET_KEY,
    DynamoDBLocal,
    MotoServer,
    SeaweedS3,
    ServerProcess,
    ServerUnavailable,
)
from pipeline.bootstrap import bootstrap


def start_server(server_class: type[ServerProcess]) -> Any:
    """Start one server or fail the test with what to install."""
    try:
        server = server_class()
    except ServerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        server.start()
    except ServerUnavailable as exc:
        server.cleanup()
        pytest.fail(str(exc), pytrace=False)
    return server


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[DynamoDBLocal]:
    server = start_server(DynamoDBLocal)
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def seaweed_s3() -> Iterator[SeaweedS3]:
    server = start_server(SeaweedS3)
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = start_server(MotoServer)
    yield server
    server.cleanup()


@dataclass(frozen=True)
class UploadQueues:
    """An upload queue and its dead-letter queue, as the stack makes them."""

    url: str
    arn: str
    dlq_url: str
    dlq_arn: str


def create_upload_queues(
    sqs: Any, name: str, *, max_receive_count: int, visibility_seconds: int = 30
) -> UploadQueues:
    """A queue whose redrive policy moves a message received ``max_receive_count`` times to
    ``{name}-dlq`` (deploy/cloudformation.yaml: UploadQueue, UploadDeadLetterQueue)."""
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = _queue_arn(sqs, dlq_url)
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
    url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(visibility_seconds),
            "RedrivePolicy": json.dumps(redrive),
        },
    )["QueueUrl"]
    return UploadQueues(url=url, arn=_queue_arn(sqs, url), dlq_url=dlq_url, dlq_arn=dlq_arn)


def _queue_arn(sqs: Any, url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return attributes["Attributes"]["QueueArn"]


def delete_upload_queues(sqs: Any, queues: UploadQueues) -> None:
    for url in (queues.url, queues.dlq_url):
        with contextlib.suppress(Exception):
            sqs.delete_queue(QueueUrl=url)


def aws_env_for(
    dynamodb: DynamoDBLocal, seaweed: SeaweedS3, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """Environment for the AWS backend against these servers, with a fresh bucket and tables."""
    suffix = uuid.uuid4().hex[:10]
    no_config = tmp_path_factory.mktemp("aws-config") / "none"
    return {
        "DATA_BACKEND": "aws",
        "AWS_ACCESS_KEY_ID": TEST_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": TEST_SECRET_KEY,
        "AWS_REGION": TEST_REGION,
        "AWS_DEFAULT_REGION": TEST_REGION,
        "AWS_ENDPOINT_URL_S3": seaweed.endpoint,
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb.endpoint,
        "S3_BUCKET": f"mc-test-{suffix}",
        "TABLE_PREFIX": f"mc-test-{suffix}",
        # Without UPLOAD_QUEUE_URL the upload queue is SQLite: one file per test, not var/.
        "STATE_DB": str(tmp_path_factory.mktemp("aws-state") / "state.sqlite"),
        # Never read a developer's profile or ask an instance metadata service.
        "AWS_CONFIG_FILE": str(no_config),
        "AWS_SHARED_CREDENTIALS_FILE": str(no_config),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@dataclass(frozen=True)
class AwsClients:
    """boto3 clients for the test servers; made once, as each costs a few hundred ms."""

    s3: Any
    dynamodb: Any


def clients_for(settings: DataSettings) -> AwsClients:
    session = boto3.Session(
        aws_access_key_id=TEST_ACCESS_KEY,
        aws_secret_access_key=TEST_SECRET_KEY,
        region_name=settings.aws_region,
    )
    return AwsClients(
        s3=aws.s3_client(settings, session), dynamodb=aws.dynamodb_client(settings, session)
    )


@pytest.fixture(scope="session")
def aws_clients(dynamodb_local: DynamoDBLocal, seaweed_s3: SeaweedS3) -> AwsClients:
    settings = DataSettings(
        backend="aws",
        s3_endpoint=seaweed_s3.endpoint,
        dynamodb_endpoint=dynamodb_local.endpoint,
        aws_region=TEST_REGION,
    )
    return clients_for(settings)


@pytest.fixture
def aws_env(
    dynamodb_local: DynamoDBLocal,
    seaweed_s3: SeaweedS3,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    return aws_env_for(dynamodb_local, seaweed_s3, tmp_path_factory)


@pytest.fixture
def aws_settings(
    aws_env: dict[str, str], aws_clients: AwsClients, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DataSettings]:
    """Settings for a fresh bucket and table prefix, with ``aws_env`` applied to the process
    (boto3 and pyarrow read credentials from it); the resources are removed afterwards."""
    for name, value in aws_env.items():
        monkeypatch.setenv(name, value)
    settings = DataSettings.from_env(aws_env)
    yield settings
    remove_aws_resources(settings, aws_clients)


@pytest.fixture
def aws_stores(aws_settings: DataSettings, aws_clients: AwsClients) -> Iterator[Stores]:
    """``Stores`` on a freshly bootstrapped bucket and tables."""
    bootstrap(aws_settings, s3=aws_clients.s3, dynamodb=aws_clients.dynamodb)
    stores = aws.build_aws_stores(aws_settings, s3=aws_clients.s3, dynamodb=aws_clients.dynamodb)
    yield stores
    stores.lake.close()  # type: ignore[attr-defined]


def remove_aws_resources(settings: DataSettings, clients: AwsClients) -> None:
    """Best effort: keep the in-memory DynamoDB and the SeaweedFS folder small."""
    for spec in aws.TABLES:
        with contextlib.suppress(Exception):
            clients.dynamodb.delete_table(TableName=spec.table_name(settings))
    s3, bucket = clients.s3, settings.s3_bucket
    with contextlib.suppress(Exception):
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            doomed = [
                {"Key": version["Key"], "VersionId": version["VersionId"]}
                for version in [*page.get("Versions", ()), *page.get("DeleteMarkers", ())]
            ]
            if doomed:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed, "Quiet": True})
        s3.delete_bucket(Bucket=bucket)
