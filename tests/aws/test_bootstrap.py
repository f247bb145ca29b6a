"""pipeline.bootstrap against DynamoDB Local and SeaweedFS."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from data_access import aws
from data_access.settings import DataSettings
from pipeline.bootstrap import STORAGE_TIERS, bootstrap, lifecycle_matches, lifecycle_rules
from tests.plugins.servers import AwsClients

pytestmark = pytest.mark.aws


@pytest.fixture
def settings(aws_settings: DataSettings) -> DataSettings:
    return aws_settings


@pytest.fixture
def s3(aws_clients: AwsClients) -> Any:
    return aws_clients.s3


@pytest.fixture
def dynamodb(aws_clients: AwsClients) -> Any:
    return aws_clients.dynamodb


def run(settings: DataSettings, s3: Any, dynamodb: Any, **options: Any) -> list[str]:
    return bootstrap(settings, s3=s3, dynamodb=dynamodb, **options)


def _changes_only(lines: list[str]) -> list[str]:
    return [line for line in lines if not line.startswith("skipped:")]


def test_first_run_creates_everything_second_run_changes_nothing(settings: DataSettings) -> None:
    # Clients of its own, from the environment, as the CLI would run it.
    first = bootstrap(settings)
    tables = [spec.table_name(settings) for spec in aws.TABLES]
    assert f"created bucket {settings.s3_bucket}" in first
    for table in tables:
        assert f"created table {table} (on-demand)" in first
    assert f"enabled TTL on {aws.CACHE_TABLE.table_name(settings)}.ttl" in first

    second = bootstrap(settings)
    assert _changes_only(second) == []
    # What the endpoint cannot do is reported on every run, not silently dropped.
    assert [line for line in second if line.startswith("skipped:")] == [
        line for line in first if line.startswith("skipped:")
    ]


def test_bucket_has_the_settings(settings: DataSettings, s3: Any, dynamodb: Any) -> None:
    changes = run(settings, s3, dynamodb)
    assert s3.get_bucket_versioning(Bucket=settings.s3_bucket)["Status"] == "Enabled"
    rules = s3.get_bucket_encryption(Bucket=settings.s3_bucket)[
        "ServerSideEncryptionConfiguration"
    ]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"

    if "skipped: lifecycle rules not supported by endpoint" in changes:
        with pytest.raises(ClientError):
            s3.get_bucket_lifecycle_configuration(Bucket=settings.s3_bucket)
    else:
        current = s3.get_bucket_lifecycle_configuration(Bucket=settings.s3_bucket)["Rules"]
        assert lifecycle_matches(current, lifecycle_rules())

    if "skipped: public access block not supported by endpoint" not in changes:
        block = s3.get_public_access_block(Bucket=settings.s3_bucket)
        assert all(block["PublicAccessBlockConfiguration"].values())


def test_tables_have_keys_index_ttl_and_on_demand_billing(
    settings: DataSettings, s3: Any, dynamodb: Any
) -> None:
    run(settings, s3, dynamodb)
    for spec in aws.TABLES:
        table = dynamodb.describe_table(TableName=spec.table_name(settings))["Table"]
        assert table["TableStatus"] == "ACTIVE"
        keys = {key["KeyType"]: key["AttributeName"] for key in table["KeySchema"]}
        assert keys["HASH"] == spec.partition_key[0]
        assert keys.get("RANGE") == (spec.sort_key[0] if spec.sort_key else None)
        billing = table.get("BillingModeSummary", {}).get("BillingMode", "PAY_PER_REQUEST")
        assert billing == "PAY_PER_REQUEST"
        indexes = {index["IndexName"]: index for index in table.get("GlobalSecondaryIndexes", [])}
        assert set(indexes) == {index.name for index in spec.global_indexes}
        for index in spec.global_indexes:
            schema = {k["KeyType"]: k["AttributeName"] for k in indexes[index.name]["KeySchema"]}
            assert schema["HASH"] == index.partition_key[0]

    ttl = dynamodb.describe_time_to_live(TableName=aws.CACHE_TABLE.table_name(settings))
    assert ttl["TimeToLiveDescription"]["TimeToLiveStatus"] == "ENABLED"
    assert ttl["TimeToLiveDescription"]["AttributeName"] == aws.CACHE_TABLE.ttl_attribute


def test_missing_index_is_added_to_an_existing_table(
    settings: DataSettings, s3: Any, dynamodb: Any
) -> None:
    table = aws.INDEX_TABLE.table_name(settings)
    dynamodb.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[
            {"AttributeName": "customerId", "KeyType": "HASH"},
            {"AttributeName": "date", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "customerId", "AttributeType": "S"},
            {"AttributeName": "date", "AttributeType": "S"},
        ],
    )
    changes = run(settings, s3, dynamodb)
    assert f"added index {aws.UPLOAD_GSI} to table {table}" in changes
    assert f"created table {table} (on-demand)" not in changes
    described = dynamodb.describe_table(TableName=table)["Table"]
    assert [i["IndexName"] for i in described["GlobalSecondaryIndexes"]] == [aws.UPLOAD_GSI]


def test_a_new_table_spec_is_created_by_the_next_run(
    settings: DataSettings, s3: Any, dynamodb: Any
) -> None:
    run(settings, s3, dynamodb)
    alerts = aws.TableSpec("alerts", partition_key=("ruleId", "S"), sort_key=("firedAt", "N"))
    changes = run(settings, s3, dynamodb, tables=(*aws.TABLES, alerts))
    assert _changes_only(changes) == [f"created table {alerts.table_name(settings)} (on-demand)"]
    dynamodb.delete_table(TableName=alerts.table_name(settings))


def test_lifecycle_comparison_ignores_how_an_endpoint_spells_rules() -> None:
    wanted = lifecycle_rules()
    # As S3 hands rules back: another order, an empty filter without its prefix.
    returned = [dict(rule) for rule in reversed(wanted)]
    for rule in returned:
        if rule["Filter"] == {"Prefix": ""}:
            rule["Filter"] = {}
        if "Transitions" in rule:
            rule["Transitions"] = list(reversed(rule["Transitions"]))
    assert lifecycle_matches(returned, wanted)

    shorter = [dict(rule) for rule in wanted]
    shorter[0] = {**shorter[0], "Expiration": {"Days": 365}}
    assert not lifecycle_matches(shorter, wanted)
    assert not lifecycle_matches(wanted[1:], wanted)


def test_lifecycle_rules_tier_processed_data_and_raw_events_in_order() -> None:
    rules = lifecycle_rules()
    tiers = {r["Filter"]["And"]["Prefix"]: r for r in rules if "Transitions" in r}
    plain = {r["Filter"]["Prefix"]: r for r in rules if "And" not in r["Filter"]}
    assert set(tiers) == {"processed/", "raw/events/"}
    for prefix, rule in tiers.items():
        transitions = rule["Transitions"]
        days = [t["Days"] for t in transitions]
        assert days == sorted(days)
        assert [(t["Days"], t["StorageClass"]) for t in transitions] == list(STORAGE_TIERS)
        # S3 moves nothing under 128 KB; the expiry must not carry that filter.
        assert rule["Filter"]["And"]["ObjectSizeGreaterThan"] == 131072
        assert "Expiration" not in rule and "NoncurrentVersionExpiration" not in rule
        assert plain[prefix]["Expiration"]["Days"] > days[-1]
    raw_uploads = plain["raw/screen_time/"]
    assert "Transitions" not in raw_uploads
    assert raw_uploads["Expiration"]["Days"] < STORAGE_TIERS[0][0]


def test_every_rewritten_or_versioned_prefix_expires_its_replaced_versions() -> None:
    plain = {r["Filter"]["Prefix"]: r for r in lifecycle_rules() if "And" not in r["Filter"]}
    for prefix in ("processed/", "raw/events/", "rollups/", "dimensions/"):
        assert plain[prefix]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30, prefix
    # Raw uploads go a week after they came, expired versions included.
    raw = plain["raw/screen_time/"]
    assert raw["Expiration"]["Days"] == 7
    assert raw["NoncurrentVersionExpiration"]["NoncurrentDays"] == 1


def test_lifecycle_comparison_sees_the_size_filter() -> None:
    wanted = lifecycle_rules()
    unfiltered = [
        {**rule, "Filter": {"Prefix": rule["Filter"]["And"]["Prefix"]}}
        if "And" in rule["Filter"]
        else rule
        for rule in wanted
    ]
    assert not lifecycle_matches(unfiltered, wanted)
