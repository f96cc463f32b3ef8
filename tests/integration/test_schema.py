"""Migrations and the database guarantees they install, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from jisr.tables import metadata
from shared import audit, migrations
from shared.db import make_engine
from shared.platform import Platform


async def test_the_migrations_build_exactly_the_models(platform: Platform) -> None:
    engine = platform.database.engine
    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
    assert diff == []


async def test_audit_events_cannot_be_changed_or_deleted(platform: Platform) -> None:
    async with platform.database.transaction() as session:
        await audit.record(session, audit.SYSTEM, "test.event")
    for statement in ("UPDATE audit_events SET action = 'forged'", "DELETE FROM audit_events"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with platform.database.transaction() as session:
                await session.execute(text(statement))
    async with platform.database.transaction() as session:
        actions = list(await session.scalars(text("SELECT action FROM audit_events")))
    assert actions == ["test.event"]


async def test_migrations_go_down_and_up_again(platform: Platform) -> None:
    url = platform.settings.resolved_database_url
    await platform.database.dispose()
    await asyncio.to_thread(migrations.downgrade, url, "base")
    engine = make_engine(url)
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda sync: sync.dialect.get_table_names(sync))
    await engine.dispose()
    assert set(tables) <= {"alembic_version"}
    await asyncio.to_thread(migrations.upgrade, url)
    async with platform.database.transaction() as session:
        await audit.record(session, audit.SYSTEM, "after.upgrade")
