"""Settings for the data-access layer, built once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class DataSettings:
    backend: Literal["local", "aws"] = "local"
    # Embedded default: a folder for the lake, one SQLite file for cache, index and state.
    lake_root: Path = Path("var/lake")
    state_db: Path = Path("var/state.sqlite")
    # AWS backend.
    s3_bucket: str = "mission-control-lake"
    s3_endpoint: str | None = None
    dynamodb_endpoint: str | None = None
    sqs_endpoint: str | None = None
    aws_region: str = "us-east-1"
    table_prefix: str = "mission-control"
    connect_timeout_seconds: float = 1.0
    read_timeout_seconds: float = 2.0
    max_attempts: int = 2
    # Read path.
    cache_ttl_seconds: int = 3600
    memo_seconds: int = 60
    version_memo_seconds: float = 1.0
    redis_url: str | None = None
    # Upload queue: SQS when a URL is set (the stack sets it), else a SQLite table in state_db.
    upload_queue_url: str | None = None
    upload_dlq_url: str | None = None
    upload_max_attempts: int = 5
    upload_retry_seconds: float = 30.0
    # Days after its date an index record is kept (0: forever); readers then find the day
    # through its date's compacted part.
    index_retention_days: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DataSettings:
        env = os.environ if env is None else env
        backend = env.get("DATA_BACKEND", "local")
        if backend not in ("local", "aws"):
            raise ValueError(f"DATA_BACKEND must be 'local' or 'aws', not {backend!r}")
        return cls(
            backend=backend,  # type: ignore[arg-type]
            lake_root=Path(env.get("LAKE_ROOT", cls.lake_root)),
            state_db=Path(env.get("STATE_DB", cls.state_db)),
            s3_bucket=env.get("S3_BUCKET", cls.s3_bucket),
            s3_endpoint=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            dynamodb_endpoint=env.get("AWS_ENDPOINT_URL_DYNAMODB")
            or env.get("AWS_ENDPOINT_URL")
            or None,
            sqs_endpoint=env.get("AWS_ENDPOINT_URL_SQS") or env.get("AWS_ENDPOINT_URL") or None,
            aws_region=env.get("AWS_REGION", env.get("AWS_DEFAULT_REGION", cls.aws_region)),
            table_prefix=env.get("TABLE_PREFIX", cls.table_prefix),
            connect_timeout_seconds=float(
                env.get("AWS_CONNECT_TIMEOUT_SECONDS", cls.connect_timeout_seconds)
            ),
            read_timeout_seconds=float(
                env.get("AWS_READ_TIMEOUT_SECONDS", cls.read_timeout_seconds)
            ),
            max_attempts=int(env.get("AWS_MAX_ATTEMPTS", cls.max_attempts)),
            cache_ttl_seconds=int(env.get("CACHE_TTL_SECONDS", cls.cache_ttl_seconds)),
            memo_seconds=int(env.get("MEMO_SECONDS", cls.memo_seconds)),
            version_memo_seconds=float(env.get("VERSION_MEMO_SECONDS", cls.version_memo_seconds)),
            redis_url=env.get("REDIS_URL") or None,
            upload_queue_url=env.get("UPLOAD_QUEUE_URL") or None,
            upload_dlq_url=env.get("UPLOAD_DLQ_URL") or None,
            upload_max_attempts=int(env.get("UPLOAD_MAX_ATTEMPTS", cls.upload_max_attempts)),
            upload_retry_seconds=float(env.get("UPLOAD_RETRY_SECONDS", cls.upload_retry_seconds)),
            index_retention_days=int(env.get("INDEX_RETENTION_DAYS", cls.index_retention_days)),
        )
