"""deploy/cloudformation.yaml: cfn-lint clean, and in step with the code it deploys.

The template is compared with its sources of truth rather than with copied values: the
table specs in ``data_access.aws``, the lifecycle rules in ``pipeline.bootstrap``, the
AWS calls the backend makes (least privilege), the CLI's subcommands (scheduled jobs),
the Lambda handler the upload function runs, the settings the code reads (container and
function environment), gunicorn.conf.py and the Dockerfile.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import runpy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint, lint_file
from cfnlint.decode import cfn_yaml

from data_access import aws, layout
from devtools.servers import REPO_ROOT
from pipeline import bootstrap
from pipeline.cli import build_parser
from tests.prod.processes import TEMPLATE, image_env

# boto3 client methods -> the IAM action each needs.
DYNAMODB_ACTIONS = {
    "get_item": "dynamodb:GetItem",
    "put_item": "dynamodb:PutItem",
    "delete_item": "dynamodb:DeleteItem",
    "update_item": "dynamodb:UpdateItem",
    "query": "dynamodb:Query",
    "scan": "dynamodb:Scan",
    "batch_get_item": "dynamodb:BatchGetItem",
    "batch_write_item": "dynamodb:BatchWriteItem",
    "transact_get_items": "dynamodb:GetItem",
    "transact_write_items": "dynamodb:PutItem",
}
S3_ACTIONS = {
    "get_object": "s3:GetObject",
    "head_object": "s3:GetObject",
    "generate_presigned_url": "s3:GetObject",
    "put_object": "s3:PutObject",
    "upload_fileobj": "s3:PutObject",
    "delete_object": "s3:DeleteObject",
    "delete_objects": "s3:DeleteObject",
    "list_objects_v2": "s3:ListBucket",
}
SQS_ACTIONS = {
    "send_message": "sqs:SendMessage",
    "send_message_batch": "sqs:SendMessage",
    "receive_message": "sqs:ReceiveMessage",
    "delete_message": "sqs:DeleteMessage",
    "delete_message_batch": "sqs:DeleteMessage",
    "change_message_visibility": "sqs:ChangeMessageVisibility",
    "change_message_visibility_batch": "sqs:ChangeMessageVisibility",
    "get_queue_attributes": "sqs:GetQueueAttributes",
}
# What a Lambda event source mapping on SQS needs of the function's role (AWS's list), plus
# ChangeMessageVisibility for releasing a failed message with a shorter retry delay.
SQS_CONSUMER_ACTIONS = {
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:ChangeMessageVisibility",
}
# pyarrow's S3FileSystem may upload in parts; an abandoned upload must be cleaned up.
S3_MULTIPART_EXTRA = {"s3:AbortMultipartUpload"}
CODE_DIRS = ("auth", "configuration", "dashboard", "data_access", "live", "pipeline")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return cfn_yaml.load(str(TEMPLATE))


def resources(template: dict, kind: str) -> dict[str, dict]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def walk(value: object) -> Iterator[object]:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def refers_to(value: object, resource: str) -> bool:
    """Whether ``value`` holds a Ref/GetAtt/Sub of ``resource``."""
    for node in walk(value):
        if isinstance(node, dict):
            if node.get("Ref") == resource:
                return True
            get_att = node.get("Fn::GetAtt")
            if isinstance(get_att, list) and get_att[0] == resource:
                return True
            sub = node.get("Fn::Sub")
            text = sub[0] if isinstance(sub, list) else sub
            if isinstance(text, str) and re.search(rf"\$\{{{resource}[.}}]", text):
                return True
    return False


def as_list(value: object) -> list:
    return value if isinstance(value, list) else [value]


def allow_statements(role: dict) -> list[dict]:
    return [
        statement
        for policy in role["Properties"].get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Allow"
    ]


def granted(role: dict, resource: str, service: str) -> set[str]:
    """Actions of ``service`` the role may perform on ``resource``."""
    return {
        action
        for statement in allow_statements(role)
        if any(refers_to(item, resource) for item in as_list(statement["Resource"]))
        for action in as_list(statement["Action"])
        if action.startswith(f"{service}:")
    }


def used_by_backend(mapping: dict[str, str]) -> set[str]:
    """IAM actions for the boto3 calls data_access/aws.py makes."""
    source = (REPO_ROOT / "data_access" / "aws.py").read_text()
    return {
        action
        for method, action in mapping.items()
        if re.search(rf"""(\.{method}\(|["']{method}["'])""", source)
    }


def parameter_default(template: dict, value: object) -> object:
    """The default of the parameter ``value`` refers to (``{"Ref": name}``)."""
    assert isinstance(value, dict) and "Ref" in value, f"{value!r} is not a parameter reference"
    return template["Parameters"][value["Ref"]]["Default"]


def container(template: dict, task_definition: str) -> dict:
    [definition] = template["Resources"][task_definition]["Properties"]["ContainerDefinitions"]
    return definition


def environment(definition: dict) -> dict[str, object]:
    values = {}
    for item in definition.get("Environment", []):
        if "Fn::If" in item:  # [condition, entry, AWS::NoValue]
            item = item["Fn::If"][1]
        values[item["Name"]] = item["Value"]
    return values


def secret_names(definition: dict) -> set[str]:
    names = set()
    for item in definition.get("Secrets", []):
        if "Fn::If" in item:
            item = item["Fn::If"][1]
        names.add(item["Name"])
    return names


def alarm_metrics(alarm: dict) -> list[dict]:
    properties = alarm["Properties"]
    if "MetricName" in properties:
        return [properties]
    return [
        query["MetricStat"]["Metric"] for query in properties["Metrics"] if "MetricStat" in query
    ]


# ------------------------------------------------------------------------------ the linter


def test_cfn_lint_reports_nothing_not_even_informational() -> None:
    matches = lint_file(Path(TEMPLATE), config=ManualArgs(include_checks=["I"]))
    assert [str(match) for match in matches] == []


def test_cfn_lint_is_really_checking() -> None:
    # A misspelt property must be reported, or the clean result above means nothing.
    broken = "Resources:\n  Topic:\n    Type: AWS::SNS::Topic\n    Properties:\n      Nmae: x\n"
    assert lint(broken), "cfn-lint accepted an unknown property"


# ------------------------------------------------------------------------------ storage


def test_tables_match_the_backend_specs(template: dict) -> None:
    tables = resources(template, "AWS::DynamoDB::Table")
    by_name = {r["Properties"]["TableName"]["Fn::Sub"]: r["Properties"] for r in tables.values()}
    assert len(by_name) == len(aws.TABLES), sorted(by_name)
    for spec in aws.TABLES:
        props = by_name.get(f"${{Prefix}}-{spec.suffix}")
        assert props is not None, f"no {spec.suffix} table"
        keys = [(k["AttributeName"], k["KeyType"]) for k in props["KeySchema"]]
        wanted = [(spec.partition_key[0], "HASH")]
        if spec.sort_key:
            wanted.append((spec.sort_key[0], "RANGE"))
        assert keys == wanted, spec.suffix
        indexes = {
            index["IndexName"]: [(k["AttributeName"], k["KeyType"]) for k in index["KeySchema"]]
            for index in props.get("GlobalSecondaryIndexes", [])
        }
        assert indexes == {
            index.name: [(index.partition_key[0], "HASH")]
            + ([(index.sort_key[0], "RANGE")] if index.sort_key else [])
            for index in spec.global_indexes
        }, spec.suffix
        types = {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}
        index_keys = [k for i in spec.global_indexes for k in (i.partition_key, i.sort_key)]
        keys_typed = [spec.partition_key, spec.sort_key, *index_keys]
        key_types = dict(key for key in keys_typed if key is not None)
        assert types == key_types, spec.suffix
        ttl = props.get("TimeToLiveSpecification")
        if spec.ttl_attribute:
            assert ttl == {"AttributeName": spec.ttl_attribute, "Enabled": True}, spec.suffix
        else:
            assert ttl is None, spec.suffix
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert props["SSESpecification"]["SSEEnabled"] is True


def test_tables_holding_data_survive_stack_deletion(template: dict) -> None:
    for name, table in resources(template, "AWS::DynamoDB::Table").items():
        if table["Properties"]["TableName"]["Fn::Sub"].endswith("-cache"):
            continue  # rebuilt from the lake on demand
        assert table.get("DeletionPolicy") == "Retain", name
        assert table["Properties"].get("DeletionProtectionEnabled") is True, name


def test_bucket_is_versioned_encrypted_private_and_tiered(template: dict) -> None:
    [bucket] = resources(template, "AWS::S3::Bucket").values()
    props = bucket["Properties"]
    assert bucket["DeletionPolicy"] == "Retain"
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    [rule] = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
    assert props["PublicAccessBlockConfiguration"] == dict(bootstrap.PUBLIC_ACCESS_BLOCK)
    as_api = [
        {
            "ID": rule["Id"],
            "Status": rule["Status"],
            "Filter": (
                {
                    "And": {
                        "Prefix": rule.get("Prefix", ""),
                        "ObjectSizeGreaterThan": int(rule["ObjectSizeGreaterThan"]),
                    }
                }
                if "ObjectSizeGreaterThan" in rule
                else {"Prefix": rule.get("Prefix", "")}
            ),
            "Transitions": [
                {"Days": t["TransitionInDays"], "StorageClass": t["StorageClass"]}
                for t in rule.get("Transitions", [])
            ],
            **(
                {"Expiration": {"Days": rule["ExpirationInDays"]}}
                if "ExpirationInDays" in rule
                else {}
            ),
            **{
                key: rule[key]
                for key in ("NoncurrentVersionExpiration", "AbortIncompleteMultipartUpload")
                if key in rule
            },
        }
        for rule in props["LifecycleConfiguration"]["Rules"]
    ]
    assert bootstrap.lifecycle_matches(as_api, bootstrap.lifecycle_rules()), (
        "the template's lifecycle differs from what `mission-control bootstrap` applies"
    )
    [policy] = resources(template, "AWS::S3::BucketPolicy").values()
    denies = [
        s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"
    ]
    assert any(s["Condition"]["Bool"]["aws:SecureTransport"] == "false" for s in denies)


# ------------------------------------------------------------------------------ IAM


def test_no_allow_statement_uses_wildcards(template: dict) -> None:
    for name, role in resources(template, "AWS::IAM::Role").items():
        for statement in allow_statements(role):
            for action in as_list(statement["Action"]):
                assert "*" not in action, f"{name}: {action}"
            for resource in as_list(statement["Resource"]):
                assert resource != "*", f"{name}: Resource *"


def test_job_role_grants_exactly_what_the_backend_calls(template: dict) -> None:
    role = template["Resources"]["JobTaskRole"]
    dynamodb_needed = used_by_backend(DYNAMODB_ACTIONS)
    s3_needed = used_by_backend(S3_ACTIONS)
    sqs_needed = used_by_backend(SQS_ACTIONS)
    assert {"dynamodb:GetItem", "dynamodb:Query", "s3:GetObject", "s3:ListBucket"} <= (
        dynamodb_needed | s3_needed
    ), "the scan of data_access/aws.py found the calls"
    assert {"dynamodb:UpdateItem", "sqs:SendMessage", "sqs:ReceiveMessage"} <= (
        dynamodb_needed | sqs_needed
    ), "counters and the upload queue were found"
    for table in resources(template, "AWS::DynamoDB::Table"):
        assert granted(role, table, "dynamodb") == dynamodb_needed, table
    lake = granted(role, "LakeBucket", "s3")
    assert s3_needed <= lake, s3_needed - lake
    assert lake - s3_needed <= S3_MULTIPART_EXTRA, lake - s3_needed
    assert granted(role, "UploadQueue", "sqs") == sqs_needed
    # Reading the dead letters peeks: receive, then visible again. Nothing sends or deletes.
    assert granted(role, "UploadDeadLetterQueue", "sqs") == {
        "sqs:ReceiveMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
    }


def test_web_role_reads_and_writes_only_what_the_dashboard_does(template: dict) -> None:
    role = template["Resources"]["WebTaskRole"]
    needed = (
        used_by_backend(DYNAMODB_ACTIONS)
        | used_by_backend(S3_ACTIONS)
        | used_by_backend(SQS_ACTIONS)
        | S3_MULTIPART_EXTRA
    )
    for statement in allow_statements(role):
        for action in as_list(statement["Action"]):
            assert action in needed, f"web role grants {action}, which no code calls"
    assert "s3:DeleteObject" not in granted(role, "LakeBucket", "s3")
    writes = [
        statement
        for statement in allow_statements(role)
        if "s3:PutObject" in as_list(statement["Action"])
    ]
    for statement in writes:
        for resource in as_list(statement["Resource"]):
            path = resource["Fn::Sub"]
            assert path.startswith("${LakeBucket.Arn}/raw/"), f"web writes beyond raw/: {path}"
    # The index's GSI is queried: the index ARN alone would not allow it.
    assert any(
        "${IndexTable.Arn}/index/*" in str(resource)
        for statement in allow_statements(role)
        for resource in as_list(statement["Resource"])
    )
    # The dashboard shows the queue; it neither sends to it nor takes uploads off it.
    assert granted(role, "UploadQueue", "sqs") == {"sqs:GetQueueAttributes"}
    assert not granted(role, "UploadDeadLetterQueue", "sqs") & {
        "sqs:SendMessage",
        "sqs:DeleteMessage",
    }


def test_upload_function_role_is_least_privilege(template: dict) -> None:
    role = template["Resources"]["UploadFunctionRole"]
    assert granted(role, "UploadQueue", "sqs") == SQS_CONSUMER_ACTIONS
    assert granted(role, "UploadDeadLetterQueue", "sqs") == set(), "SQS's redrive moves them"
    # Raw uploads in, Parquet and quarantine copies out, superseded Parquet deleted: no
    # other prefixes, and a raw upload or quarantine copy is never deleted.
    paths: dict[str, set[str]] = {}
    for statement in allow_statements(role):
        for action in as_list(statement["Action"]):
            if action in {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}:
                for resource in as_list(statement["Resource"]):
                    paths.setdefault(action, set()).add(resource["Fn::Sub"])
    prefix = "${LakeBucket.Arn}/"
    assert paths == {
        "s3:GetObject": {
            f"{prefix}{layout.RAW_SCREEN_TIME}*",
            f"{prefix}{layout.QUARANTINE_SCREEN_TIME}*",
        },
        "s3:PutObject": {
            f"{prefix}{layout.PROCESSED_SCREEN_TIME}*",
            f"{prefix}{layout.QUARANTINE_SCREEN_TIME}*",
        },
        "s3:DeleteObject": {f"{prefix}{layout.PROCESSED_SCREEN_TIME}*"},
    }
    assert granted(role, "LakeBucket", "s3") == {
        "s3:ListBucket",
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
    }
    assert granted(role, "CacheTable", "dynamodb") == set()
    backend = used_by_backend(DYNAMODB_ACTIONS)
    for table in ("IndexTable", "StateTable", "RecordsTable"):
        actions = granted(role, table, "dynamodb")
        assert actions and actions <= backend, (table, actions - backend)
        assert not actions & {"dynamodb:Scan", "dynamodb:BatchWriteItem"}, table
    assert "dynamodb:UpdateItem" in granted(role, "StateTable", "dynamodb"), "counters"


def test_roles_are_assumed_only_by_their_service(template: dict) -> None:
    for name, role in resources(template, "AWS::IAM::Role").items():
        [statement] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        service = statement["Principal"]["Service"]
        assert service in {
            "ecs-tasks.amazonaws.com",
            "events.amazonaws.com",
            "lambda.amazonaws.com",
        }, name


# ------------------------------------------------------------------------------ serving


def test_https_listener_with_optional_alb_sign_in(template: dict) -> None:
    listeners = resources(template, "AWS::ElasticLoadBalancingV2::Listener")
    https = [p["Properties"] for p in listeners.values() if p["Properties"]["Protocol"] == "HTTPS"]
    assert len(https) == 1
    [listener] = https
    assert listener["Port"] == 443
    assert listener["SslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    assert refers_to(listener["Certificates"], "CertificateArn")
    condition, with_alb, without = listener["DefaultActions"]["Fn::If"]
    assert template["Conditions"][condition] == {"Fn::Equals": [{"Ref": "AuthMode"}, "alb"]}
    assert [a["Type"] for a in with_alb] == ["authenticate-oidc", "forward"]
    assert [a["Type"] for a in without] == ["forward"]
    assert "dev" not in template["Parameters"]["AuthMode"]["AllowedValues"]
    for other in listeners.values():
        props = other["Properties"]
        if props["Protocol"] == "HTTP":
            assert [a["Type"] for a in props["DefaultActions"]] == ["redirect"]
            assert props["DefaultActions"][0]["RedirectConfig"]["Protocol"] == "HTTPS"


def test_load_balancer_gunicorn_and_image_agree() -> None:
    template = cfn_yaml.load(str(TEMPLATE))
    gunicorn = runpy.run_path(str(REPO_ROOT / "gunicorn.conf.py"))
    [balancer] = resources(template, "AWS::ElasticLoadBalancingV2::LoadBalancer").values()
    attributes = {a["Key"]: a["Value"] for a in balancer["Properties"]["LoadBalancerAttributes"]}
    # The ALB must close idle connections before gunicorn does (else: sporadic 502s).
    assert int(attributes["idle_timeout.timeout_seconds"]) < gunicorn["keepalive"]
    [group] = resources(template, "AWS::ElasticLoadBalancingV2::TargetGroup").values()
    port = int(image_env()["BIND"].rsplit(":", 1)[1])
    assert group["Properties"]["HealthCheckPath"] == "/healthz"
    assert group["Properties"]["Port"] == port
    web = container(template, "WebTaskDefinition")
    assert [m["ContainerPort"] for m in web["PortMappings"]] == [port]
    # ECS sends SIGKILL StopTimeout seconds after SIGTERM: gunicorn must finish before.
    assert web["StopTimeout"] > gunicorn["graceful_timeout"]
    assert "Command" not in web, "the web container runs the image's CMD"
    assert web["ReadonlyRootFilesystem"] is True
    assert any(m["ContainerPath"] == "/tmp" for m in web["MountPoints"])
    assert environment(web)["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")


def test_container_environment_names_settings_the_code_reads(template: dict) -> None:
    sources = (
        "\n".join(
            path.read_text()
            for folder in CODE_DIRS
            for path in (REPO_ROOT / folder).rglob("*.py")
            if (REPO_ROOT / folder).is_dir()
        )
        + (REPO_ROOT / "gunicorn.conf.py").read_text()
    )
    for task_definition in ("WebTaskDefinition", "JobTaskDefinition"):
        definition = container(template, task_definition)
        for name in set(environment(definition)) | secret_names(definition):
            assert f'"{name}"' in sources, f"{task_definition} sets {name}, which nothing reads"
    web = container(template, "WebTaskDefinition")
    env = environment(web)
    assert env["DATA_BACKEND"] == "aws"
    assert env["APP_ENV"] == "production"
    assert refers_to(env["S3_BUCKET"], "LakeBucket")
    assert env["TABLE_PREFIX"] == {"Ref": "Prefix"}
    assert "SECRET_KEY" in secret_names(web) and "SECRET_KEY" not in env, "from Secrets Manager"
    function_env = template["Resources"]["UploadFunction"]["Properties"]["Environment"]
    for name in function_env["Variables"]:
        assert f'"{name}"' in sources, f"UploadFunction sets {name}, which nothing reads"
    # Every process that builds AWS stores uses the same queue (else it falls back to SQLite).
    for values in (
        env,
        environment(container(template, "JobTaskDefinition")),
        function_env["Variables"],
    ):
        assert refers_to(values["UPLOAD_QUEUE_URL"], "UploadQueue")
        assert refers_to(values["UPLOAD_DLQ_URL"], "UploadDeadLetterQueue")
        assert values["UPLOAD_MAX_ATTEMPTS"] == {"Ref": "UploadMaxReceiveCount"}


def test_scheduled_jobs_run_real_cli_subcommands(template: dict) -> None:
    parser = build_parser()
    [subparsers] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    job = container(template, "JobTaskDefinition")
    scheduled = {}
    for name, rule in resources(template, "AWS::Events::Rule").items():
        if "ScheduleExpression" not in rule["Properties"]:
            continue
        [target] = rule["Properties"]["Targets"]
        assert refers_to(target["EcsParameters"]["TaskDefinitionArn"], "JobTaskDefinition")
        [override] = json.loads(target["Input"])["containerOverrides"]
        assert override["name"] == job["Name"], name
        program, subcommand, *_ = override["command"]
        assert program == "mission-control"
        assert subcommand in subparsers.choices, f"{name}: no subcommand {subcommand!r}"
        scheduled[subcommand] = rule["Properties"]["ScheduleExpression"]
    assert {"process", "rollup"} <= set(scheduled), scheduled


# ------------------------------------------------------------------------------ upload queue


def test_raw_uploads_notify_the_upload_queue(template: dict) -> None:
    bucket = template["Resources"]["LakeBucket"]
    [notification] = bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert refers_to(notification["Queue"], "UploadQueue")
    assert notification["Event"] == "s3:ObjectCreated:*"
    assert notification["Filter"]["S3Key"]["Rules"] == [
        {"Name": "prefix", "Value": layout.RAW_SCREEN_TIME}
    ]
    # S3 checks its permission to send when the notification is set: policy first.
    assert "UploadQueuePolicy" in as_list(bucket.get("DependsOn", []))
    policy = template["Resources"]["UploadQueuePolicy"]["Properties"]
    assert [queue for queue in policy["Queues"] if refers_to(queue, "UploadQueue")]
    [allow] = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "s3.amazonaws.com"}
    assert as_list(allow["Action"]) == ["sqs:SendMessage"]
    assert refers_to(allow["Resource"], "UploadQueue")
    source_arn = allow["Condition"]["ArnEquals"]["aws:SourceArn"]
    # Built from the bucket's name: a reference to the bucket would be a dependency cycle.
    assert not refers_to(source_arn, "LakeBucket")
    assert "arn:${AWS::Partition}:s3:::${BucketName}" in json.dumps(source_arn)
    assert allow["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}


def test_upload_queue_dead_letters_after_the_receive_count(template: dict) -> None:
    queue = template["Resources"]["UploadQueue"]["Properties"]
    redrive = queue["RedrivePolicy"]
    assert refers_to(redrive["deadLetterTargetArn"], "UploadDeadLetterQueue")
    assert redrive["maxReceiveCount"] == {"Ref": "UploadMaxReceiveCount"}
    assert parameter_default(template, redrive["maxReceiveCount"]) == 5
    dead = template["Resources"]["UploadDeadLetterQueue"]["Properties"]
    assert "RedrivePolicy" not in dead
    # A dead letter keeps its first enqueue time: the DLQ must keep messages longer.
    assert dead["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]
    for properties in (queue, dead):
        assert properties["SqsManagedSseEnabled"] is True


def test_upload_function_drains_the_queue_in_partial_batches(template: dict) -> None:
    mappings = resources(template, "AWS::Lambda::EventSourceMapping")
    [mapping] = [m["Properties"] for m in mappings.values()]
    assert refers_to(mapping["EventSourceArn"], "UploadQueue")
    assert refers_to(mapping["FunctionName"], "UploadFunction")
    # Without it a single bad upload would send its whole batch back to the queue.
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] == {"Ref": "UploadBatchSize"}
    # Large batches: one part per (date, bucket) per batch keeps PUTs per upload small.
    assert parameter_default(template, mapping["BatchSize"]) == 500
    concurrency = mapping["ScalingConfig"]["MaximumConcurrency"]
    assert concurrency == {"Ref": "UploadMaxConcurrency"}
    assert parameter_default(template, concurrency) == 10
    assert template["Parameters"]["UploadMaxConcurrency"]["MinValue"] == 2  # SQS's least

    function = template["Resources"]["UploadFunction"]["Properties"]
    queue = template["Resources"]["UploadQueue"]["Properties"]
    window = mapping.get("MaximumBatchingWindowInSeconds", 0)
    # AWS's guidance: at least six times the function's timeout (plus the batching window).
    assert queue["VisibilityTimeout"] >= 6 * function["Timeout"] + window

    # The function runs the image the tasks run, and the handler exists there.
    assert function["PackageType"] == "Image"
    assert function["Code"]["ImageUri"] == {"Ref": "ImageUri"}
    assert refers_to(function["Role"], "UploadFunctionRole")
    [handler] = function["ImageConfig"]["Command"]
    module, _, name = handler.rpartition(".")
    assert callable(getattr(importlib.import_module(module), name, None)), handler
    assert function["Environment"]["Variables"]["DATA_BACKEND"] == "aws"


# ------------------------------------------------------------------------------ alarms


def test_alarms_cover_errors_latency_throttles_jobs_and_lag(template: dict) -> None:
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    metrics = [metric for alarm in alarms.values() for metric in alarm_metrics(alarm)]
    names = {metric["MetricName"] for metric in metrics}
    assert {
        "HTTPCode_Target_5XX_Count",
        "HTTPCode_ELB_5XX_Count",
        "TargetResponseTime",
        "ReadThrottleEvents",
        "WriteThrottleEvents",
        "FailedInvocations",
        "MatchedEvents",
    } <= names, names
    for table in resources(template, "AWS::DynamoDB::Table"):
        for kind in ("ReadThrottleEvents", "WriteThrottleEvents"):
            assert any(
                m["MetricName"] == kind and refers_to(m["Dimensions"], table) for m in metrics
            ), f"{kind} of {table} is not watched"
    dead_letters = [
        metric
        for metric in metrics
        if metric["MetricName"] == "ApproximateNumberOfMessagesVisible"
        and refers_to(metric["Dimensions"], "UploadDeadLetterQueue")
    ]
    assert dead_letters, "nobody hears of dead-lettered uploads"
    [dead_letter_alarm] = [a for a in alarms.values() if refers_to(a, "UploadDeadLetterQueue")]
    assert dead_letter_alarm["Properties"]["Threshold"] == 0
    assert dead_letter_alarm["Properties"]["ComparisonOperator"] == "GreaterThanThreshold"
    failed = [a for a in alarms.values() if refers_to(a, "JobFailedRule")]
    lag = [a for a in alarms.values() if refers_to(a, "JobSucceededRule")]
    assert failed and lag
    # No successful run at all is exactly the case the lag alarm exists for.
    assert lag[0]["Properties"]["TreatMissingData"] == "breaching"
    for name, alarm in alarms.items():
        assert refers_to(alarm["Properties"]["AlarmActions"], "AlarmTopic"), name


def test_job_rules_watch_the_job_task_family(template: dict) -> None:
    family = template["Resources"]["JobTaskDefinition"]["Properties"]["Family"]["Fn::Sub"]
    for name in ("JobFailedRule", "JobSucceededRule"):
        detail = template["Resources"][name]["Properties"]["EventPattern"]["detail"]
        assert detail["group"] == [{"Fn::Sub": f"family:{family}"}], name
        assert detail["lastStatus"] == ["STOPPED"]
