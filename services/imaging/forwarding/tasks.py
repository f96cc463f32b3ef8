"""Forwarding a share to the partner's store, retried with backoff while the partner is down."""

from __future__ import annotations

from typing import Any

from services.imaging.forwarding import service
from shared.tasks import celery_app, run_async


@celery_app.task(name=service.TASK, bind=True, max_retries=service.MAX_RETRIES)
def forward_share_task(self: Any, forwarding_id: int) -> str:
    """Push the instances of one forwarding not yet confirmed at the partner; its state after."""
    last = self.request.retries >= self.max_retries
    try:
        return run_async(
            lambda platform: service.forward(
                platform, forwarding_id=forwarding_id, last_attempt=last
            )
        )
    except service.RetryLater as later:
        raise self.retry(countdown=later.countdown, exc=later) from later
