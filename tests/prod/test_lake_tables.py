"""The Glue tables, view and Athena workgroup of deploy/cloudformation.yaml equal what
pipeline/sql.py defines for DuckDB, so a query runs on Athena as `mission-control sql` runs it."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

from data_access import layout
from pipeline import bootstrap, sql
from tests.prod.processes import TEMPLATE


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return cfn_yaml.load(str(TEMPLATE))


def _plain(value: Any) -> Any:
    """The loader's node types as plain dicts, lists and strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, str) else value


def test_glue_tables_equal_the_sql_definitions(template: dict) -> None:
    glue = {
        name: _plain(resource)
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Glue::Table"
    }
    assert glue == sql.glue_resources()
    names = {r["Properties"]["TableInput"]["Name"] for r in glue.values()}
    assert names == {t.name for t in sql.TABLES} | {v.name for v in sql.VIEWS}


def test_the_screen_time_view_is_the_duckdb_view(template: dict) -> None:
    [view] = [
        r["Properties"]["TableInput"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Glue::Table"
        and r["Properties"]["TableInput"]["TableType"] == "VIRTUAL_VIEW"
    ]
    prefix, encoded, suffix = view["ViewOriginalText"]["Fn::Join"][1]
    text = encoded["Fn::Base64"]["Fn::Sub"].replace("${LakeDatabase}", "lake")
    original = f"{prefix}{base64.b64encode(text.encode()).decode()}{suffix}"
    document = sql.decode_presto_view(original)
    [definition] = sql.VIEWS
    assert document["originalSql"] == definition.sql
    assert document["schema"] == "lake"
    assert [c["name"] for c in document["columns"]] == [c.name for c in definition.columns]


def test_partition_projection_covers_the_layout(template: dict) -> None:
    assert sql.SCREEN_TIME_BUCKETS == layout.SCREEN_TIME_BUCKETS
    parts = next(t for t in sql.TABLES if t.name == "screen_time_parts")
    assert parts.glob.startswith(layout.PROCESSED_SCREEN_TIME)
    example = layout.screen_time_part_key("2024-05-01", 7, "x")
    assert example.startswith(layout.PROCESSED_SCREEN_TIME + "date=2024-05-01/bucket=07/")
    assert layout.events_key("purchase", "2024-05-01", 5).endswith(
        "date=2024-05-01/hour=05/part.parquet"
    )


def test_workgroup_encrypts_results_caps_bytes_and_results_expire(template: dict) -> None:
    [workgroup] = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Athena::WorkGroup"
    ]
    config = workgroup["WorkGroupConfiguration"]
    assert config["EnforceWorkGroupConfiguration"] is True
    assert config["BytesScannedCutoffPerQuery"] == {"Ref": "AthenaBytesScannedCutoff"}
    assert template["Parameters"]["AthenaBytesScannedCutoff"]["MinValue"] == 10485760
    results = config["ResultConfiguration"]
    assert results["EncryptionConfiguration"]["EncryptionOption"] in {"SSE_S3", "SSE_KMS"}
    location = results["OutputLocation"]["Fn::Sub"]
    assert location == f"s3://${{LakeBucket}}/{bootstrap.ATHENA_RESULTS_PREFIX}"
    expiring = [
        rule
        for rule in bootstrap.lifecycle_rules()
        if rule["Filter"].get("Prefix") == bootstrap.ATHENA_RESULTS_PREFIX
    ]
    assert expiring and expiring[0]["Expiration"]["Days"] == bootstrap.ATHENA_RESULTS_DAYS
