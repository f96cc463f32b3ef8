"""Integration tests run against the real PostgreSQL (and SQLite where it says so)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.settings import Settings


@pytest.fixture
def settings(tmp_path: Path, signing_key: Path, database_url: str) -> Settings:
    return Settings(
        environment="test",
        data_dir=tmp_path,
        database_url=database_url,
        signing_key_path=signing_key,
        seed_demo=False,
        log_json=False,
    )
