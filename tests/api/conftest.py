"""These tests run on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.settings import Settings
from tests.conftest import make_settings


@pytest.fixture
def settings(tmp_path: Path, signing_key: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, signing_key, database_url)
