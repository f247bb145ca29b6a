"""Fixtures for the live-data tests: stores, an ingest app and an API key."""

from __future__ import annotations

import pytest
from flask import Flask

from data_access.apikeys import create_key
from data_access.stores import Stores
from live.ingest import IngestApi, register_ingest
from live.settings import IngestSettings


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def ingest_settings() -> IngestSettings:
    return IngestSettings()


@pytest.fixture
def ingest_app(local_stores: Stores, ingest_settings: IngestSettings) -> Flask:
    server = Flask("ingest-test")
    register_ingest(server, local_stores, ingest_settings)
    return server


@pytest.fixture
def ingest_api(ingest_app: Flask) -> IngestApi:
    return ingest_app.extensions["ingest_api"]


@pytest.fixture
def client(ingest_app: Flask):
    return ingest_app.test_client()


@pytest.fixture
def token(local_stores: Stores) -> str:
    return create_key(local_stores.records, "test", ["ingest"], created_by="tests").token


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
