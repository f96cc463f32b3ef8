"""SMTP delivery of a notification, in the language it was written in.

The message is a plain-text RFC 5322 e-mail in UTF-8, kept 7-bit on the wire
(RFC 2047 encoded words in the headers, quoted-printable or base64 in the body)
so that any relay carries Arabic intact. Subject is the notification's title,
the body its text and a footer in the same language; `Content-Language`
(RFC 3282) names the language, and `Auto-Submitted: auto-generated` (RFC 3834)
keeps auto-responders quiet. It goes out through the standard library's
`smtplib` (RFC 5321) on a worker thread.

`Notification.email_state` moves like this:

    pending ──sent──> sent         (never sent again: `deliver` answers "sent")
    pending ──SMTP off──> none     (`smtp_host` unset: `deliver` answers "disabled")
    pending ──no address──> none   (the user lost their address or was disabled)
    pending ──transient error──> pending, attempts + 1, DeliveryError (the task retries)
    pending ──refused (5xx), or an address no message can carry──> failed,
                                   DeliveryRefused (no retry)
    pending ──retries used up──> failed (`give_up`)
    failed ──`deliver` called again (by hand)──> tried once more, like pending

Each attempt is counted before the SMTP conversation starts, in a short
transaction of its own that claims the row by compare-and-set on
`email_attempts` (a delivery that loses the race answers "busy"); no
transaction stays open while the server is talking.
Delivery is at least once: if the process dies after the server took the
message and before "sent" is committed, the redelivered task sends it again,
with the same Message-ID, so the recipient's mail system can drop the
duplicate. One task is queued per notification and its retries run one after
the other, so that crash is the only way to send twice.

Exceptions:

    DeliveryError          the message was not delivered; trying again may work
    └── DeliveryRefused    the server refused it for good (a 5xx reply)
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr
from typing import Literal

from sqlalchemy import CursorResult, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import utcnow
from shared.i18n import translate
from shared.identity.models import User
from shared.notifications.models import Notification
from shared.platform import Platform
from shared.settings import Settings

__all__ = ["DeliveryError", "DeliveryRefused", "Outcome", "build_message", "deliver", "give_up"]

Outcome = Literal["sent", "disabled", "no_address", "busy", "missing"]
"""What `deliver` did: sent (now or before), nothing to do, or another delivery holds the row."""

SENDABLE = ("pending", "failed")
# 7-bit transfer encodings (quoted-printable or base64 for non-ASCII text) and CRLF
# line ends: any relay accepts the message, with or without 8BITMIME.
POLICY = SMTP.clone(cte_type="7bit")


class DeliveryError(Exception):
    """The message was not delivered; trying again later may work."""


class DeliveryRefused(DeliveryError):
    """The SMTP server refused the message for good (a 5xx reply): retrying will not help."""


async def deliver(platform: Platform, notification_id: int) -> Outcome:
    """Send one notification by e-mail, once; raise DeliveryError when it did not go out."""
    settings = platform.settings
    async with platform.database.transaction() as session:
        prepared = await _prepare(session, settings, notification_id)
    if isinstance(prepared, DeliveryRefused):
        raise prepared
    if isinstance(prepared, str):
        return prepared
    message, recipient = prepared
    try:
        await asyncio.to_thread(_send, settings, message, recipient)
    except (smtplib.SMTPException, OSError) as exc:
        if _permanent(exc):
            await _set_state(platform, notification_id, "failed")
            raise DeliveryRefused(f"notification {notification_id}: {exc}") from exc
        raise DeliveryError(f"notification {notification_id}: {exc}") from exc
    await _set_state(platform, notification_id, "sent")
    return "sent"


async def _prepare(
    session: AsyncSession, settings: Settings, notification_id: int
) -> Outcome | DeliveryRefused | tuple[EmailMessage, str]:
    """Decide whether to send; if so, count the attempt and build the message."""
    row = await session.get(Notification, notification_id)
    if row is None:
        return "missing"
    if row.email_state == "sent":
        return "sent"
    if not settings.smtp_host:
        row.email_state = "none"
        return "disabled"
    user = await session.get(User, row.user_id)
    if row.email_state not in SENDABLE or user is None or not user.email or user.disabled:
        row.email_state = "none"
        return "no_address"
    try:
        message = build_message(row, user, settings)
    except ValueError as exc:  # an address no message can carry (a HeaderDefect is one)
        row.email_state = "failed"
        return DeliveryRefused(f"notification {notification_id}: {user.email!r}: {exc}")
    if not await _claim(session, row):
        return "busy"
    return message, user.email


async def give_up(platform: Platform, notification_id: int) -> None:
    """Mark a notification whose retries are used up as failed (a sent one stays sent)."""
    await _set_state(platform, notification_id, "failed")


def build_message(row: Notification, user: User, settings: Settings) -> EmailMessage:
    """The e-mail of one notification, in its language, with a Message-ID stable across retries."""
    assert user.email is not None
    message = EmailMessage(policy=POLICY)
    message["From"] = settings.smtp_from
    message["To"] = Address(display_name=_one_line(user.display_name), addr_spec=user.email)
    message["Subject"] = _one_line(row.title)
    message["Date"] = format_datetime(row.created_at)
    message["Message-ID"] = (
        f"<jisr.notification.{row.id}.{row.created_at:%Y%m%d%H%M%S}@{_domain(settings)}>"
    )
    message["Auto-Submitted"] = "auto-generated"
    footer = f"{translate('mail.footer', row.lang)}\n{translate('mail.no_reply', row.lang)}"
    message.set_content(f"{row.body}\n\n-- \n{footer}\n", charset="utf-8")
    message["Content-Language"] = row.lang  # after set_content, which drops Content-* headers
    return message


async def _claim(session: AsyncSession, row: Notification) -> bool:
    """Count this attempt, unless another delivery counted it first (compare-and-set)."""
    result = await session.execute(
        update(Notification)
        .where(
            Notification.id == row.id,
            Notification.email_attempts == row.email_attempts,
            Notification.email_state.in_(SENDABLE),
        )
        .values(email_attempts=Notification.email_attempts + 1)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    return result.rowcount == 1


async def _set_state(platform: Platform, notification_id: int, state: str) -> None:
    async with platform.database.transaction() as session:
        row = await session.get(Notification, notification_id)
        if row is None or row.email_state == "sent":
            return
        row.email_state = state
        if state == "sent":
            row.emailed_at = utcnow()


def _send(settings: Settings, message: EmailMessage, recipient: str) -> None:
    """One SMTP conversation (RFC 5321), on a worker thread: smtplib blocks."""
    assert settings.smtp_host
    smtp = smtplib.SMTP(timeout=settings.smtp_timeout_s)
    try:
        code, reply = smtp.connect(settings.smtp_host, settings.smtp_port)
        if code != 220:
            raise smtplib.SMTPConnectError(code, reply)
        if settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.smtp_username:
            smtp.login(settings.smtp_username, settings.smtp_password or "")
        smtp.send_message(message, from_addr=parseaddr(settings.smtp_from)[1], to_addrs=[recipient])
        # The message is accepted: a failed goodbye must not make it look undelivered.
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.quit()
    finally:
        smtp.close()


def _permanent(exc: BaseException) -> bool:
    """A 5xx reply about this message (sender, recipient or content) will not change on retry."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(500 <= code < 600 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPSenderRefused | smtplib.SMTPDataError):
        return 500 <= exc.smtp_code < 600
    return False


def _domain(settings: Settings) -> str:
    return parseaddr(settings.smtp_from)[1].rpartition("@")[2] or "localhost"


def _one_line(text: str) -> str:
    """Header text on one line: a line break in a title must not start a new header."""
    return " ".join(text.split())
