"""E-mail delivery of notifications (SMTP)."""

from __future__ import annotations

from shared.notifications import email
from shared.platform import Platform
from shared.tasks import celery_app, run_async


@celery_app.task(name="notifications.send_email_task", bind=True, max_retries=5)
def send_email_task(self: object, notification_id: int) -> str:
    """Send one notification by e-mail; a sent one is never sent again."""

    async def body(platform: Platform) -> str:
        return await email.deliver(platform, notification_id)

    return run_async(body)
