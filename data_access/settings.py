"""Settings for the data-access layer, built once from the environment."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from configuration.base import setting
from data_access.settings_base import AwsSettings


class DataSettings(AwsSettings):
    backend: Literal["local", "aws"] = setting(
        "local",
        "DATA_BACKEND",
        description="`local` (folder + SQLite) or `aws` (S3 + DynamoDB)",
    )
    # Embedded default: a folder for the lake, one SQLite file for cache, index and state.
    lake_root: Path = setting(
        Path("var/lake"), "LAKE_ROOT", description="the lake folder (`local`)"
    )
    state_db: Path = setting(
        Path("var/state.sqlite"),
        "STATE_DB",
        description="SQLite file for cache, index, state and records (`local`)",
    )
    # AWS backend.
    s3_bucket: str = setting(
        "mission-control-lake", "S3_BUCKET", description="the lake bucket (`aws`)", min_length=1
    )
    s3_endpoint: str | None = setting(
        None, "AWS_ENDPOINT_URL_S3", description="S3 endpoint", shown_default="`AWS_ENDPOINT_URL`"
    )
    dynamodb_endpoint: str | None = setting(
        None,
        "AWS_ENDPOINT_URL_DYNAMODB",
        description="DynamoDB endpoint",
        shown_default="`AWS_ENDPOINT_URL`",
    )
    sqs_endpoint: str | None = setting(
        None, "AWS_ENDPOINT_URL_SQS", description="SQS endpoint", shown_default="`AWS_ENDPOINT_URL`"
    )
    table_prefix: str = setting(
        "mission-control",
        "TABLE_PREFIX",
        description="DynamoDB tables are `{prefix}-cache`, `-index`, `-state`, `-records`",
        min_length=1,
    )
    # botocore's budget per call, so a slow dependency cannot hang a panel.
    connect_timeout_seconds: float = setting(
        1.0, "AWS_CONNECT_TIMEOUT_SECONDS", description="botocore connect timeout per call", gt=0
    )
    read_timeout_seconds: float = setting(
        2.0, "AWS_READ_TIMEOUT_SECONDS", description="botocore read timeout per call", gt=0
    )
    max_attempts: int = setting(
        2, "AWS_MAX_ATTEMPTS", description="botocore attempts per call (first try included)", ge=1
    )
    # Read path.
    cache_ttl_seconds: int = setting(
        3600, "CACHE_TTL_SECONDS", description="cache table entry lifetime (0 keeps nothing)", ge=0
    )
    memo_seconds: int = setting(
        60,
        "MEMO_SECONDS",
        description="lifetime of memo and figure cache entries (keys carry the data version, "
        "so this only bounds memory)",
        ge=0,
    )
    version_memo_seconds: float = setting(
        1.0, "VERSION_MEMO_SECONDS", description="how long a data-version lookup is reused", ge=0
    )
    redis_url: str | None = setting(
        None,
        "REDIS_URL",
        description="a Redis shared by all workers and instances for the memo, the figure cache "
        "and the refresh floor (flask-caching's `RedisCache`); without it each worker keeps its "
        "own (`SimpleCache`). While Redis fails, each worker uses its own caches and logs a "
        "warning at most once a minute",
    )
    # Upload queue: SQS when a URL is set (the stack sets it), else a SQLite table in state_db.
    upload_queue_url: str | None = setting(
        None,
        "UPLOAD_QUEUE_URL",
        description="the SQS upload queue (`aws`; the stack sets it). Without it the upload "
        "queue is a table in `STATE_DB`",
    )
    upload_dlq_url: str | None = setting(
        None,
        "UPLOAD_DLQ_URL",
        description="the upload queue's dead-letter queue (`aws`; the stack sets it)",
    )
    upload_max_attempts: int = setting(
        5,
        "UPLOAD_MAX_ATTEMPTS",
        description="deliveries of a failing upload message before it is dead-lettered (local "
        "queue; on SQS the stack's `UploadMaxReceiveCount`)",
        ge=1,
    )
    upload_retry_seconds: float = setting(
        30.0,
        "UPLOAD_RETRY_SECONDS",
        description="how soon a failed upload message is delivered again",
        ge=0,
    )
    # Readers find a day whose record has gone through its date's compacted part.
    index_retention_days: int = setting(
        0,
        "INDEX_RETENTION_DAYS",
        description="days after its date a customer-day's index record is kept (at least two "
        "days after it was written); then readers find the day in its date's compacted part, "
        "and the record goes (DynamoDB TTL; locally at each rollup). `0` keeps records for "
        "ever; the stack sets `14`",
        ge=0,
    )

    service_endpoints: ClassVar[tuple[str, ...]] = (
        "s3_endpoint",
        "dynamodb_endpoint",
        "sqs_endpoint",
    )
