"""The AWS backend on the local servers, for the sections that measure it (aws, cost)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from data_access import aws as aws_backend
from data_access.settings import DataSettings


@dataclass(frozen=True)
class LocalAws:
    settings: DataSettings
    session: Any  # boto3.Session with the local servers' credentials

    def s3(self) -> Any:
        """A new S3 client: each has its own request counters and connection pool."""
        return aws_backend.s3_client(self.settings, self.session)

    def dynamodb(self) -> Any:
        return aws_backend.dynamodb_client(self.settings, self.session)


@contextmanager
def local_aws(name: str, folder: Path) -> Iterator[LocalAws]:
    """DynamoDB Local and SeaweedFS on loopback, with a bucket and tables named ``name``
    made as ``mission-control bootstrap`` makes them; the upload queue is SQLite in
    ``folder``. Both servers stop on exit."""
    from devtools.servers import (
        TEST_ACCESS_KEY,
        TEST_REGION,
        TEST_SECRET_KEY,
        DynamoDBLocal,
        SeaweedS3,
    )
    from pipeline.bootstrap import bootstrap

    with ExitStack() as cleanup:
        dynamodb, seaweed = DynamoDBLocal(), SeaweedS3()
        cleanup.callback(dynamodb.cleanup)
        cleanup.callback(seaweed.cleanup)
        dynamodb.start()
        seaweed.start()
        folder.mkdir(parents=True, exist_ok=True)
        settings = DataSettings(
            backend="aws",
            s3_bucket=name,
            table_prefix=name,
            s3_endpoint=seaweed.endpoint,
            dynamodb_endpoint=dynamodb.endpoint,
            aws_region=TEST_REGION,
            state_db=folder / "queue.sqlite",
        )
        session = boto3.Session(
            aws_access_key_id=TEST_ACCESS_KEY,
            aws_secret_access_key=TEST_SECRET_KEY,
            region_name=TEST_REGION,
        )
        local = LocalAws(settings, session)
        bootstrap(settings, s3=local.s3(), dynamodb=local.dynamodb())
        yield local
