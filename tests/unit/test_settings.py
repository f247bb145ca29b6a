"""Every package's settings model: defaults, bounds, and one error naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from configuration.base import LogSettings, SettingsError
from dashboard.security import SecuritySettings
from dashboard.settings import DashboardSettings
from data_access.settings import DataSettings
from live.settings import IngestSettings
from pipeline.notify import NotifySettings


def test_data_defaults_when_nothing_is_set():
    settings = DataSettings.from_env({})
    assert settings.backend == "local"
    assert settings.lake_root == Path("var/lake")
    assert settings.aws_region == "us-east-1"
    assert (settings.max_attempts, settings.cache_ttl_seconds, settings.memo_seconds) == (
        2,
        3600,
        60,
    )
    assert settings.s3_endpoint is None and settings.redis_url is None


def test_an_empty_variable_means_the_default():
    assert DataSettings.from_env({"AWS_MAX_ATTEMPTS": "", "REDIS_URL": ""}).max_attempts == 2


def test_values_are_typed():
    settings = DataSettings.from_env(
        {"LAKE_ROOT": "/srv/lake", "VERSION_MEMO_SECONDS": "0.5", "INDEX_RETENTION_DAYS": "14"}
    )
    assert settings.lake_root == Path("/srv/lake")
    assert settings.version_memo_seconds == 0.5
    assert settings.index_retention_days == 14


def test_the_general_endpoint_serves_every_service_without_its_own():
    settings = DataSettings.from_env(
        {"AWS_ENDPOINT_URL": "http://local:4566", "AWS_ENDPOINT_URL_SQS": "http://sqs:9324"}
    )
    assert settings.s3_endpoint == settings.dynamodb_endpoint == "http://local:4566"
    assert settings.sqs_endpoint == "http://sqs:9324"


def test_aws_region_falls_back_to_aws_default_region():
    assert DataSettings.from_env({"AWS_DEFAULT_REGION": "eu-west-1"}).aws_region == "eu-west-1"
    both = {"AWS_REGION": "eu-central-1", "AWS_DEFAULT_REGION": "eu-west-1"}
    assert DataSettings.from_env(both).aws_region == "eu-central-1"


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        (
            {"AWS_MAX_ATTEMPTS": "0"},
            "AWS_MAX_ATTEMPTS='0': Input should be greater than or equal to 1",
        ),
        ({"AWS_MAX_ATTEMPTS": "two"}, "AWS_MAX_ATTEMPTS='two': Input should be a valid integer"),
        ({"DATA_BACKEND": "gcs"}, "DATA_BACKEND='gcs': Input should be 'local' or 'aws'"),
        ({"INDEX_RETENTION_DAYS": "-1"}, "INDEX_RETENTION_DAYS='-1': Input should be greater than"),
        (
            {"AWS_READ_TIMEOUT_SECONDS": "0"},
            "AWS_READ_TIMEOUT_SECONDS='0': Input should be greater",
        ),
    ],
)
def test_an_invalid_value_names_the_variable_and_the_bound(env: dict[str, str], complaint: str):
    with pytest.raises(SettingsError) as raised:
        DataSettings.from_env(env)
    assert str(raised.value).startswith(complaint)


def test_every_invalid_variable_is_named_in_one_error():
    with pytest.raises(SettingsError) as raised:
        DataSettings.from_env({"AWS_MAX_ATTEMPTS": "0", "MEMO_SECONDS": "-5"})
    assert "AWS_MAX_ATTEMPTS" in str(raised.value) and "MEMO_SECONDS" in str(raised.value)


def test_settings_are_frozen():
    settings = DataSettings.from_env({})
    with pytest.raises(ValueError, match="frozen"):
        settings.memo_seconds = 0  # type: ignore[misc]


def test_a_given_mapping_never_mixes_with_the_process_environment(monkeypatch):
    monkeypatch.setenv("S3_BUCKET", "from-the-process")
    assert DataSettings.from_env({}).s3_bucket == "mission-control-lake"
    assert DataSettings.from_env().s3_bucket == "from-the-process"


def test_ingest_defaults_and_bounds():
    settings = IngestSettings.from_env({})
    assert (settings.max_batch_bytes, settings.max_batch_events) == (1024 * 1024, 1000)
    assert (settings.rate_per_second, settings.rate_burst) == (50.0, 100)
    assert IngestSettings.from_env({"INGEST_RATE_BURST": "7"}).rate_burst == 7
    with pytest.raises(SettingsError, match="INGEST_RATE_PER_SECOND='0': Input should be greater"):
        IngestSettings.from_env({"INGEST_RATE_PER_SECOND": "0"})
    with pytest.raises(SettingsError, match=r"INGEST_RATE_BURST='0': .* or equal to 1"):
        IngestSettings.from_env({"INGEST_RATE_BURST": "0"})


def test_dashboard_refresh_defaults_follow_the_choices():
    assert DashboardSettings.from_env({}).refresh_floor_ms == 4000
    settings = DashboardSettings.from_env({"REFRESH_CHOICES_MS": "2000, 10000"})
    assert settings.refresh_choices_ms == (2000, 10000)
    assert (settings.refresh_default_ms, settings.refresh_floor_ms) == (2000, 1600)


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        (
            {"REFRESH_DEFAULT_MS": "7000"},
            "REFRESH_DEFAULT_MS='7000': 7000 is not one of",
        ),
        ({"REFRESH_FLOOR_MS": "6000"}, "REFRESH_FLOOR_MS='6000': 6000 must lie between 0 and"),
        (
            {"REFRESH_CHOICES_MS": "0,5000"},
            "REFRESH_CHOICES_MS='0': Input should be greater",
        ),
        ({"HEALTH_ENDPOINTS": "cdn"}, "HEALTH_ENDPOINTS='cdn': entry 'cdn' needs name=url"),
        ({"GRID_ROW_LIMIT": "0"}, "GRID_ROW_LIMIT='0': Input should be greater than or equal to 1"),
        ({"HSTS_SECONDS": "-1"}, "HSTS_SECONDS='-1': Input should be greater than or equal to 0"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL='LOUD': Input should be 'CRITICAL', 'ERROR'"),
    ],
)
def test_dashboard_values_out_of_bounds_are_named(env: dict[str, str], complaint: str):
    with pytest.raises(SettingsError) as raised:
        for model in (DashboardSettings, SecuritySettings, LogSettings):
            model.from_env(env)
    assert str(raised.value).startswith(complaint)


def test_dashboard_lists_are_comma_separated():
    settings = DashboardSettings.from_env(
        {"HEALTH_ENDPOINTS": "cdn=https://cdn.test, pay=https://pay.test", "SAMPLE_HOSTS": "a,b,"}
    )
    assert settings.health_endpoints == (("cdn", "https://cdn.test"), ("pay", "https://pay.test"))
    assert settings.sample_hosts == frozenset({"a", "b"})


def test_log_level_is_read_in_any_case():
    assert LogSettings.from_env({"LOG_LEVEL": "warning"}).log_level == "WARNING"
    assert LogSettings.from_env({}).log_level == "INFO"


def test_notify_shares_the_aws_region_and_endpoint_with_the_data_layer():
    env = {"AWS_DEFAULT_REGION": "eu-west-1", "AWS_ENDPOINT_URL": "http://local:4566"}
    notify, data = NotifySettings.from_env(env), DataSettings.from_env(env)
    assert notify.aws_region == data.aws_region == "eu-west-1"
    assert notify.sns_endpoint == data.s3_endpoint == "http://local:4566"
    own = NotifySettings.from_env({**env, "AWS_ENDPOINT_URL_SNS": "http://sns:9911"})
    assert own.sns_endpoint == "http://sns:9911"
    with pytest.raises(SettingsError, match="NOTIFY_MAX_ATTEMPTS='0'"):
        NotifySettings.from_env({"NOTIFY_MAX_ATTEMPTS": "0"})
