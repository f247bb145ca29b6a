"""Builds the stores for the configured backend."""

from __future__ import annotations

from data_access.settings import DataSettings
from data_access.stores import Stores


def build_stores(settings: DataSettings) -> Stores:
    if settings.backend == "aws":
        from data_access.aws import build_aws_stores  # boto3 clients only when asked for

        return build_aws_stores(settings)
    from data_access.local import (
        LocalLake,
        SqliteCacheTable,
        SqliteMetadataIndex,
        SqliteRecordStore,
        SqliteStateStore,
        SqliteUploadQueue,
    )

    return Stores(
        lake=LocalLake(settings.lake_root),
        cache=SqliteCacheTable(settings.state_db),
        index=SqliteMetadataIndex(settings.state_db, retention_days=settings.index_retention_days),
        state=SqliteStateStore(settings.state_db),
        records=SqliteRecordStore(settings.state_db),
        queue=SqliteUploadQueue(
            settings.state_db,
            max_attempts=settings.upload_max_attempts,
            retry_seconds=settings.upload_retry_seconds,
        ),
    )
