"""Apps for the security tests: the real ``create_app`` over a tiny lake, in dev and OIDC mode
(the OIDC one never reaches a provider: it only serves unauthenticated answers)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from flask import Flask

from dashboard import create_app
from dashboard.security import EXTENSION_KEY
from tests.plugins.browser import SampleLake, build_sample_lake


@pytest.fixture(scope="module")
def tiny_lake(tmp_path_factory: pytest.TempPathFactory) -> SampleLake:
    return build_sample_lake(
        tmp_path_factory.mktemp("security"),
        customers=2,
        days=3,
        end_date=dt.datetime.now(dt.UTC).date(),
    )


@pytest.fixture(scope="module")
def make_app(tiny_lake: SampleLake) -> Callable[..., Flask]:
    def make(**env: str) -> Flask:
        server = create_app(
            {
                "LAKE_ROOT": str(tiny_lake.settings.lake_root),
                "STATE_DB": str(tiny_lake.settings.state_db),
                "SECRET_KEY": "security-tests",
                "LOG_LEVEL": "WARNING",
                **env,
            }
        )
        assert EXTENSION_KEY in server.extensions, (
            "create_app must call dashboard.security.init_security(server, app, "
            "SecuritySettings.from_env(env)) after the pages are registered"
        )
        return server

    return make


@pytest.fixture(scope="module")
def dev_app(make_app) -> Flask:
    return make_app()


@pytest.fixture(scope="module")
def oidc_app(make_app) -> Flask:
    return make_app(
        AUTH_MODE="oidc",
        OIDC_ISSUER="http://127.0.0.1:9/",  # never contacted by these tests
        OIDC_CLIENT_ID="mission-control-test",
        OIDC_CLIENT_SECRET="not-used",
        ROLE_MAP="mc-admins=admin",
    )
