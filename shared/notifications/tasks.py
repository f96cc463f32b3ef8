"""E-mail delivery of notifications (SMTP), retried with exponential backoff."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from shared.notifications import email
from shared.tasks import celery_app, run_async

log = logging.getLogger("jisr.notifications")

MAX_RETRIES = 5


def backoff_s(retries: int) -> int:
    """Seconds before retry number `retries + 1`: 30 s, 1 min, 2 min, ... at most an hour."""
    return int(min(2**retries * 30, 3600))


@celery_app.task(name="notifications.send_email_task", bind=True, max_retries=MAX_RETRIES)
def send_email_task(self: Task[Any, Any], notification_id: int) -> str:
    """Send one notification by e-mail; a sent one is never sent again.

    A transient failure (the server unreachable, a 4xx reply) is retried with
    exponential backoff; when the retries are used up, or the server refuses
    the message for good, the notification's e-mail is marked failed.
    """
    try:
        return run_async(lambda platform: email.deliver(platform, notification_id))
    except email.DeliveryRefused as exc:
        log.warning("e-mail of notification %s refused: %s", notification_id, exc)
        return "failed"
    except email.DeliveryError as exc:
        retries = self.request.retries
        if retries >= (self.max_retries or 0):
            run_async(lambda platform: email.give_up(platform, notification_id))
            log.warning(
                "e-mail of notification %s failed after %s attempts: %s",
                notification_id,
                retries + 1,
                exc,
            )
            return "failed"
        raise self.retry(exc=exc, countdown=backoff_s(retries)) from exc
