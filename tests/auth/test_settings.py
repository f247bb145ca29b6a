"""Auth settings from the environment, the refusals at start-up, and their documentation."""

from __future__ import annotations

import pytest
from flask import Flask

from auth import init_auth
from auth.settings import AuthSettings, parse_role_map
from configuration.base import SettingsError

OIDC_ENV = {
    "AUTH_MODE": "oidc",
    "OIDC_ISSUER": "https://idp.example.test",
    "OIDC_CLIENT_ID": "client",
    "OIDC_CLIENT_SECRET": "secret",
    "ROLE_MAP": "a=admin",
}
PRODUCTION_SECRET = "p" * 48


def test_defaults_are_dev_mode_and_nothing_to_refuse():
    settings = AuthSettings.from_env({})

    assert settings.mode == "dev"
    assert not settings.mode_explicit
    assert settings.problems() == []


def test_values_are_read_from_the_environment():
    settings = AuthSettings.from_env(
        {
            **OIDC_ENV,
            "OIDC_SCOPES": "openid,email groups",
            "OIDC_ROLES_CLAIM": "realm_access.roles",
            "ROLE_MAP": "mc-admins=admin, mc-ops = operator",
            "OIDC_LEEWAY_SECONDS": "30",
            "SESSION_IDLE_MINUTES": "15",
            "SESSION_MAX_HOURS": "8",
            "ALB_REGION": "eu-west-1",
            "PROXY_FIX_X_FOR": "1",
            "PROXY_FIX_X_PROTO": "2",
        }
    )

    assert settings.oidc_scopes == "openid email groups"
    assert settings.oidc_roles_claim == "realm_access.roles"
    assert settings.role_map == (("mc-admins", "admin"), ("mc-ops", "operator"))
    assert (settings.oidc_leeway_seconds, settings.session_idle_minutes) == (30, 15)
    assert settings.session_max_hours == 8
    assert settings.alb_key_url == "https://public-keys.auth.elb.eu-west-1.amazonaws.com/{kid}"
    assert (settings.proxy_fix.x_for, settings.proxy_fix.x_proto) == (1, 2)
    assert settings.proxy_fix.enabled


@pytest.mark.parametrize("text", ["admins", "=admin", "admins=root"])
def test_role_map_entries_must_be_group_equals_known_role(text):
    with pytest.raises(ValueError, match="ROLE_MAP"):
        parse_role_map(text)


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"AUTH_MODE": "saml"}, "AUTH_MODE"),
        ({"SESSION_MAX_HOURS": "soon"}, "SESSION_MAX_HOURS"),
        ({"OIDC_LEEWAY_SECONDS": "-5"}, "OIDC_LEEWAY_SECONDS"),
    ],
)
def test_unreadable_values_are_refused(env, complaint):
    with pytest.raises(ValueError, match=complaint):
        AuthSettings.from_env(env)


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"APP_ENV": "production", "SECRET_KEY": PRODUCTION_SECRET}, "explicit AUTH_MODE"),
        ({"APP_ENV": "production", **OIDC_ENV}, "SECRET_KEY"),
        ({"APP_ENV": "production", **OIDC_ENV, "SECRET_KEY": "short"}, "SECRET_KEY"),
        (
            {"APP_ENV": "production", "AUTH_MODE": "dev", "SECRET_KEY": PRODUCTION_SECRET},
            "AUTH_MODE=dev",
        ),
        ({**OIDC_ENV, "OIDC_ISSUER": ""}, "OIDC_ISSUER"),
        ({**OIDC_ENV, "OIDC_CLIENT_SECRET": ""}, "OIDC_CLIENT_SECRET"),
        ({**OIDC_ENV, "OIDC_SCOPES": "email"}, "openid"),
        ({**OIDC_ENV, "ROLE_MAP": ""}, "ROLE_MAP"),
        ({"AUTH_MODE": "alb", "ROLE_MAP": "a=admin", "ALB_REGION": "eu-west-1"}, "SIGNER"),
        ({"AUTH_MODE": "alb", "ROLE_MAP": "a=admin", "ALB_EXPECTED_SIGNER": "arn"}, "ALB_REGION"),
        ({"DEV_ROLE": "root"}, "DEV_ROLE"),
    ],
)
def test_init_auth_refuses_to_start_with_unsafe_settings(env, complaint):
    settings = AuthSettings.from_env(env)

    with pytest.raises(RuntimeError, match=complaint):
        init_auth(Flask("refused"), settings, None)


def test_production_needs_a_record_store_for_the_audit_log():
    settings = AuthSettings.from_env(
        {**OIDC_ENV, "APP_ENV": "production", "SECRET_KEY": PRODUCTION_SECRET}
    )

    assert settings.problems() == []
    with pytest.raises(RuntimeError, match="record store"):
        init_auth(Flask("no-records"), settings, None)


def test_production_oidc_with_everything_starts(records):
    server = Flask("ok")
    settings = AuthSettings.from_env(
        {**OIDC_ENV, "APP_ENV": "production", "SECRET_KEY": PRODUCTION_SECRET}
    )

    init_auth(server, settings, records)

    assert server.config["SECRET_KEY"] == PRODUCTION_SECRET
    assert server.config["SESSION_COOKIE_HTTPONLY"] is True
    assert server.config["SESSION_COOKIE_SAMESITE"] == "Lax"


def test_blank_values_mean_the_default_and_the_key_url_follows_the_region():
    settings = AuthSettings.from_env(
        {"AUTH_MODE": "  ", "OIDC_ROLES_CLAIM": " ", "ALB_REGION": "x"}
    )

    assert (settings.mode, settings.mode_explicit) == ("dev", False)
    assert settings.oidc_roles_claim == "groups"
    assert settings.alb_key_url == "https://public-keys.auth.elb.x.amazonaws.com/{kid}"
    assert not settings.proxy_fix.enabled


def test_every_invalid_variable_is_named_in_one_error():
    with pytest.raises(SettingsError) as raised:
        AuthSettings.from_env({"PROXY_FIX_X_FOR": "-1", "OIDC_CACHE_SECONDS": "soon"})

    assert "PROXY_FIX_X_FOR='-1': Input should be greater than or equal to 0" in str(raised.value)
    assert "OIDC_CACHE_SECONDS='soon'" in str(raised.value)
