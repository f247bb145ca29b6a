"""Fixtures every tier shares. Server fixtures live in tests/plugins/."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_access.factory import build_stores
from data_access.settings import DataSettings
from data_access.stores import Stores

pytest_plugins = ["tests.plugins.servers", "tests.plugins.oidc", "tests.plugins.browser"]


@pytest.fixture
def local_settings(tmp_path: Path) -> DataSettings:
    return DataSettings(lake_root=tmp_path / "lake", state_db=tmp_path / "state.sqlite")


@pytest.fixture
def local_stores(local_settings: DataSettings) -> Stores:
    return build_stores(local_settings)
