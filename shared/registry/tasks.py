"""Scheduled work of the registry."""

from __future__ import annotations

from shared.db import utcnow
from shared.platform import Platform
from shared.registry import service
from shared.tasks import celery_app, run_async


@celery_app.task(name="registry.expire_agreements_task")
def expire_agreements_task() -> list[str]:
    """Mark agreements past their end date expired; safe to run any number of times."""

    async def body(platform: Platform) -> list[str]:
        async with platform.database.transaction() as session:
            lapsed = await service.expire_lapsed(session, at=utcnow())
            return [row.code for row in lapsed]

    return run_async(body)
