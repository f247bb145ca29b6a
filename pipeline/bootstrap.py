"""Create or bring up to date the AWS resources the backend needs: one bucket, the tables.

``bootstrap(settings)`` reads each setting back before it writes, so a second run changes
nothing. It returns one line per change made; where the endpoint does not implement a
feature (SeaweedFS: public access block, lifecycle; DynamoDB Local: point-in-time
recovery) it adds a ``"skipped: ... not supported by endpoint"`` line instead, on every
run, and goes on. Against real AWS every setting applies.

Lifecycle tiers follow the storage layout: processed data and raw events over 128 KB move
Standard -> Standard-IA (90 d) -> Intelligent-Tiering (180 d) -> Glacier IR (365 d) -> Deep
Archive (730 d); S3 does not transition smaller objects, so the tiering rules say so in their
filter and the expiry (2555 days) is a rule of its own that applies whatever the size. Raw
screen-time uploads expire after 30 days, Athena's results after 7. Replaced versions
(rollups rewritten in place, compacted parts, the app dimension) expire 30 days after.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from data_access import aws
from data_access.aws import TableSpec, error_code
from data_access.settings import DataSettings

# Codes an endpoint answers with for an API it does not implement.
NOT_IMPLEMENTED_CODES = frozenset(
    {
        "NotImplemented",
        "UnknownOperationException",
        "UnsupportedOperation",
        "UnsupportedOperationException",
    }
)
RETENTION_DAYS = 2555
# Raw uploads are read only until processed (the processed parts keep the sessions); a week
# leaves room to re-process after an incident. Expiry leaves a noncurrent version in a
# versioned bucket: it goes a day later, or the week would be five.
RAW_SCREEN_TIME_DAYS = 7
RAW_NONCURRENT_DAYS = 1
NONCURRENT_VERSION_DAYS = 30
ABORT_MULTIPART_DAYS = 7
STORAGE_TIERS: tuple[tuple[int, str], ...] = (
    (90, "STANDARD_IA"),
    (180, "INTELLIGENT_TIERING"),
    (365, "GLACIER_IR"),
    (730, "DEEP_ARCHIVE"),
)
TIERED_PREFIXES: dict[str, str] = {"processed": "processed/", "raw-events": "raw/events/"}
# S3 never moves an object under 128 KB to another class: the filter makes that explicit.
TIERING_MIN_BYTES = 131072
# Rewritten in place: only their replaced versions need expiring.
REWRITTEN_PREFIXES: dict[str, str] = {"rollups": "rollups/", "dimensions": "dimensions/"}
ATHENA_RESULTS_PREFIX = "athena-results/"
ATHENA_RESULTS_DAYS = 7
PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


def not_implemented(exc: BaseException) -> bool:
    return error_code(exc) in NOT_IMPLEMENTED_CODES


def lifecycle_rules() -> list[dict[str, Any]]:
    """The bucket's lifecycle rules, in the shape PutBucketLifecycleConfiguration takes."""
    noncurrent = {"NoncurrentDays": NONCURRENT_VERSION_DAYS}
    rules: list[dict[str, Any]] = []
    for name, prefix in TIERED_PREFIXES.items():
        rules.append(
            {
                "ID": f"{name}-tiers",
                "Filter": {"And": {"Prefix": prefix, "ObjectSizeGreaterThan": TIERING_MIN_BYTES}},
                "Status": "Enabled",
                "Transitions": [
                    {"Days": days, "StorageClass": tier} for days, tier in STORAGE_TIERS
                ],
            }
        )
        # Apart from the tiers: a size filter there would keep small objects forever.
        rules.append(
            {
                "ID": f"{name}-expiry",
                "Filter": {"Prefix": prefix},
                "Status": "Enabled",
                "Expiration": {"Days": RETENTION_DAYS},
                "NoncurrentVersionExpiration": noncurrent,
            }
        )
    rules += [
        {
            "ID": f"{name}-replaced-versions",
            "Filter": {"Prefix": prefix},
            "Status": "Enabled",
            "NoncurrentVersionExpiration": noncurrent,
        }
        for name, prefix in REWRITTEN_PREFIXES.items()
    ]
    rules.append(
        {
            "ID": "athena-results-expiry",
            "Filter": {"Prefix": ATHENA_RESULTS_PREFIX},
            "Status": "Enabled",
            "Expiration": {"Days": ATHENA_RESULTS_DAYS},
            "NoncurrentVersionExpiration": noncurrent,
        }
    )
    rules.append(
        {
            "ID": "raw-screen-time-expiry",
            "Filter": {"Prefix": "raw/screen_time/"},
            "Status": "Enabled",
            "Expiration": {"Days": RAW_SCREEN_TIME_DAYS},
            "NoncurrentVersionExpiration": {"NoncurrentDays": RAW_NONCURRENT_DAYS},
        }
    )
    rules.append(
        {
            "ID": "abort-incomplete-multipart",
            "Filter": {"Prefix": ""},
            "Status": "Enabled",
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_MULTIPART_DAYS},
        }
    )
    return rules


def _rule_signature(rule: dict[str, Any]) -> tuple:
    """What a rule does, ignoring how the endpoint spells an empty filter and list order."""
    rule_filter = rule.get("Filter", {})
    condition = rule_filter.get("And", rule_filter)
    prefix = condition.get("Prefix", rule.get("Prefix", ""))
    transitions = tuple(
        sorted((t.get("Days"), t.get("StorageClass")) for t in rule.get("Transitions", ()))
    )
    return (
        rule.get("ID"),
        rule.get("Status"),
        prefix,
        condition.get("ObjectSizeGreaterThan"),
        transitions,
        rule.get("Expiration", {}).get("Days"),
        rule.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays"),
        rule.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation"),
    )


def lifecycle_matches(current: list[dict[str, Any]], wanted: list[dict[str, Any]]) -> bool:
    return sorted(map(_rule_signature, current)) == sorted(map(_rule_signature, wanted))


class _Changes(list[str]):
    def skipped(self, what: str) -> None:
        self.append(f"skipped: {what} not supported by endpoint")


def _ensure_bucket(s3: Any, bucket: str, region: str, changes: _Changes) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
        return
    except ClientError as exc:
        if error_code(exc) not in {"404", "NoSuchBucket", "NotFound"}:
            raise
    create_args: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":  # us-east-1 refuses an explicit location constraint
        create_args["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**create_args)
    except ClientError as exc:
        if error_code(exc) != "BucketAlreadyOwnedByYou":
            raise
        return
    changes.append(f"created bucket {bucket}")


def _ensure_versioning(s3: Any, bucket: str, changes: _Changes) -> None:
    try:
        if s3.get_bucket_versioning(Bucket=bucket).get("Status") == "Enabled":
            return
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    except ClientError as exc:
        if not_implemented(exc):
            return changes.skipped("bucket versioning")
        raise
    changes.append(f"enabled versioning on bucket {bucket}")


def _ensure_encryption(s3: Any, bucket: str, changes: _Changes) -> None:
    try:
        try:
            config = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
            algorithms = {
                rule.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm")
                for rule in config.get("Rules", ())
            }
            # KMS already set is stronger than SSE-S3: leave it.
            if algorithms & {"AES256", "aws:kms", "aws:kms:dsse"}:
                return
        except ClientError as exc:
            if error_code(exc) != "ServerSideEncryptionConfigurationNotFoundError":
                raise
        s3.put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        )
    except ClientError as exc:
        if not_implemented(exc):
            return changes.skipped("default encryption")
        raise
    changes.append(f"set default encryption SSE-S3 on bucket {bucket}")


def _ensure_public_access_block(s3: Any, bucket: str, changes: _Changes) -> None:
    try:
        try:
            current = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
            if all(current.get(name) is True for name in PUBLIC_ACCESS_BLOCK):
                return
        except ClientError as exc:
            if error_code(exc) != "NoSuchPublicAccessBlockConfiguration":
                raise
        s3.put_public_access_block(
            Bucket=bucket, PublicAccessBlockConfiguration=dict(PUBLIC_ACCESS_BLOCK)
        )
    except ClientError as exc:
        if not_implemented(exc):
            return changes.skipped("public access block")
        raise
    changes.append(f"blocked public access on bucket {bucket}")


def _ensure_lifecycle(s3: Any, bucket: str, changes: _Changes) -> None:
    wanted = lifecycle_rules()
    try:
        try:
            current = s3.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", [])
        except ClientError as exc:
            if error_code(exc) != "NoSuchLifecycleConfiguration":
                raise
            current = []
        if lifecycle_matches(current, wanted):
            return
        s3.put_bucket_lifecycle_configuration(
            Bucket=bucket, LifecycleConfiguration={"Rules": wanted}
        )
    except ClientError as exc:
        if not_implemented(exc):
            return changes.skipped("lifecycle rules")
        raise
    changes.append(f"applied {len(wanted)} lifecycle rules on bucket {bucket}")


def _key_schema(partition: tuple[str, str], sort: tuple[str, str] | None) -> list[dict]:
    schema = [{"AttributeName": partition[0], "KeyType": "HASH"}]
    if sort is not None:
        schema.append({"AttributeName": sort[0], "KeyType": "RANGE"})
    return schema


def _attribute_definitions(spec: TableSpec) -> list[dict[str, str]]:
    keys = [spec.partition_key, spec.sort_key]
    for index in spec.global_indexes:
        keys += [index.partition_key, index.sort_key]
    defined = dict(key for key in keys if key is not None)
    return [{"AttributeName": name, "AttributeType": kind} for name, kind in defined.items()]


def _gsi_definition(index: aws.GlobalIndexSpec) -> dict[str, Any]:
    return {
        "IndexName": index.name,
        "KeySchema": _key_schema(index.partition_key, index.sort_key),
        "Projection": {"ProjectionType": "ALL"},
    }


def _wait_active(dynamodb: Any, table: str) -> None:
    dynamodb.get_waiter("table_exists").wait(
        TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 300}
    )


def _ensure_table(dynamodb: Any, spec: TableSpec, table: str, changes: _Changes) -> None:
    try:
        description = dynamodb.describe_table(TableName=table)["Table"]
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        create_args: dict[str, Any] = {
            "TableName": table,
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": _key_schema(spec.partition_key, spec.sort_key),
            "AttributeDefinitions": _attribute_definitions(spec),
        }
        if spec.global_indexes:
            create_args["GlobalSecondaryIndexes"] = [
                _gsi_definition(index) for index in spec.global_indexes
            ]
        try:
            dynamodb.create_table(**create_args)
            changes.append(f"created table {table} (on-demand)")
        except ClientError as create_exc:
            # Another bootstrap may have created it a moment ago.
            if error_code(create_exc) != "ResourceInUseException":
                raise
        _wait_active(dynamodb, table)
        return

    if description.get("TableStatus") != "ACTIVE":
        _wait_active(dynamodb, table)
    billing = description.get("BillingModeSummary", {}).get("BillingMode")
    # DynamoDB Local omits the summary for on-demand tables; only a stated mode is changed.
    if billing is not None and billing != "PAY_PER_REQUEST":
        dynamodb.update_table(TableName=table, BillingMode="PAY_PER_REQUEST")
        changes.append(f"switched table {table} to on-demand")
        _wait_active(dynamodb, table)
    present = {index["IndexName"] for index in description.get("GlobalSecondaryIndexes", ())}
    for index in spec.global_indexes:
        if index.name in present:
            continue
        dynamodb.update_table(
            TableName=table,
            AttributeDefinitions=_attribute_definitions(spec),
            GlobalSecondaryIndexUpdates=[{"Create": _gsi_definition(index)}],
        )
        changes.append(f"added index {index.name} to table {table}")
        _wait_active(dynamodb, table)


def _ensure_ttl(dynamodb: Any, spec: TableSpec, table: str, changes: _Changes) -> None:
    if spec.ttl_attribute is None:
        return
    try:
        current = dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
        if current.get("TimeToLiveStatus") in {"ENABLED", "ENABLING"} and (
            current.get("AttributeName") == spec.ttl_attribute
        ):
            return
        dynamodb.update_time_to_live(
            TableName=table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.ttl_attribute},
        )
    except ClientError as exc:
        if not_implemented(exc):
            return changes.skipped(f"TTL on {table}")
        raise
    changes.append(f"enabled TTL on {table}.{spec.ttl_attribute}")


def _ensure_point_in_time_recovery(dynamodb: Any, table: str, changes: _Changes) -> None:
    try:
        backups = dynamodb.describe_continuous_backups(TableName=table)
        recovery = backups["ContinuousBackupsDescription"].get("PointInTimeRecoveryDescription", {})
        if recovery.get("PointInTimeRecoveryStatus") in {"ENABLED", "ENABLING"}:
            return
        dynamodb.update_continuous_backups(
            TableName=table,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )
    except ClientError as exc:
        if not_implemented(exc):
            return changes.skipped(f"point-in-time recovery on {table}")
        raise
    changes.append(f"enabled point-in-time recovery on {table}")


def bootstrap(
    settings: DataSettings,
    *,
    tables: tuple[TableSpec, ...] = aws.TABLES,
    s3: Any | None = None,
    dynamodb: Any | None = None,
) -> list[str]:
    """Create or update the bucket and tables; return what changed (and what was skipped)."""
    # An admin command, not a request: allow slower answers and more retries.
    admin_settings = settings.model_copy(
        update={
            "read_timeout_seconds": max(settings.read_timeout_seconds, 10.0),
            "max_attempts": max(settings.max_attempts, 3),
        }
    )
    s3 = s3 or aws.s3_client(admin_settings)
    dynamodb = dynamodb or aws.dynamodb_client(admin_settings)
    changes = _Changes()

    bucket = settings.s3_bucket
    _ensure_bucket(s3, bucket, settings.aws_region, changes)
    _ensure_versioning(s3, bucket, changes)
    _ensure_encryption(s3, bucket, changes)
    _ensure_public_access_block(s3, bucket, changes)
    _ensure_lifecycle(s3, bucket, changes)

    for spec in tables:
        table = spec.table_name(settings)
        _ensure_table(dynamodb, spec, table, changes)
        _ensure_ttl(dynamodb, spec, table, changes)
        _ensure_point_in_time_recovery(dynamodb, table, changes)
    return list(changes)
