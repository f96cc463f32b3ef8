"""SMTP delivery of a notification; the SMTP part arrives with the notifications work."""

from __future__ import annotations

from shared.platform import Platform


async def deliver(platform: Platform, notification_id: int) -> str:
    raise NotImplementedError("SMTP delivery is not configured yet")
