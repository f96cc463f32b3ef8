"""The beat task that picks up studies C-STOREd into each institution's Orthanc."""

from __future__ import annotations

from typing import Any

from services.imaging.pickup import service
from shared.platform import Platform
from shared.tasks import celery_app, run_async


@celery_app.task(name=service.TASK)
def poll_stores_task() -> dict[str, Any]:
    """Read every institution's Orthanc change log once; what was recorded and what was skipped."""
    return run_async(_poll)


async def _poll(platform: Platform) -> dict[str, Any]:
    result = await service.poll_stores(platform)
    return result.as_dict()
