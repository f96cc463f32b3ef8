"""Notify users in their own language; e-mail goes out after the transaction commits.

Message ids are `notify.<kind>.title` and `notify.<kind>.body` in the i18n
catalogues; `params` fill them in. Each recipient reads them in their first
language.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import CursorResult, Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import utcnow
from shared.entitlements import vocab
from shared.i18n import DEFAULT_LANGUAGE, LANGUAGES, translate
from shared.identity.deps import Caller
from shared.identity.models import Role, User
from shared.notifications.models import Notification
from shared.pagination import PageParams, Pagination, paginate
from shared.problems import NotFound
from shared.tasks import send_after_commit


def language_of(user: User) -> str:
    return next((lang for lang in user.languages if lang in LANGUAGES), DEFAULT_LANGUAGE)


async def notify(
    session: AsyncSession,
    users: Iterable[User],
    kind: str,
    *,
    params: dict[str, Any],
    resource_type: str | None = None,
    resource_id: object | None = None,
) -> list[Notification]:
    created = []
    for user in {u.id: u for u in users if not u.disabled}.values():
        lang = language_of(user)
        words = {key: _words(key, value, lang) for key, value in params.items()}
        row = Notification(
            user_id=user.id,
            kind=kind,
            resource_type=resource_type,
            resource_id=None if resource_id is None else str(resource_id),
            lang=lang,
            title=translate(f"notify.{kind}.title", lang, **words),
            body=translate(f"notify.{kind}.body", lang, **words),
            params=params,
            email_state="pending" if user.email else "none",
        )
        session.add(row)
        created.append(row)
    await session.flush()
    for row in created:
        if row.email_state == "pending":
            send_after_commit(session, "notifications.send_email_task", row.id)
    return created


def _words(key: str, value: Any, lang: str) -> Any:
    """A parameter in the reader's words; a {"id": ...} parameter is itself a message."""
    if isinstance(value, dict) and "id" in value:
        return translate(str(value["id"]), lang, **{k: v for k, v in value.items() if k != "id"})
    return vocab.localize(key, value, lang)


def next_step(provider_code: str | None) -> dict[str, str]:
    """What happened after a decline or a timeout, as a nested message."""
    if provider_code:
        return {"id": "notify.next_offered", "provider": provider_code}
    return {"id": "notify.next_none"}


async def staff(
    session: AsyncSession,
    institution_id: int,
    roles: Iterable[Role],
    *,
    specialty: str | None = None,
) -> list[User]:
    """Active users of an institution with one of `roles`; specialists of another specialty are left out."""
    wanted = {r.value for r in roles}
    users = await session.scalars(
        select(User).where(User.institution_id == institution_id, User.disabled.is_(False))
    )
    chosen = []
    for user in users:
        held = set(user.roles) & wanted
        if not held:
            continue
        clinical = held <= {Role.SPECIALIST.value, Role.RADIOLOGIST.value}
        if clinical and specialty and user.specialties and specialty not in user.specialties:
            continue
        chosen.append(user)
    return chosen


# The recipient's own notifications: a caller only ever sees rows addressed to them. ------


def _own(caller: Caller) -> Select[Notification]:
    return select(Notification).where(Notification.user_id == caller.user_id)


async def list_own(
    session: AsyncSession, caller: Caller, *, paging: PageParams, unread: bool | None = None
) -> tuple[list[Notification], Pagination]:
    """The caller's notifications, newest first; `unread` True or False keeps only those."""
    query = _own(caller).order_by(Notification.created_at.desc(), Notification.id.desc())
    if unread is True:
        query = query.where(Notification.read_at.is_(None))
    elif unread is False:
        query = query.where(Notification.read_at.is_not(None))
    return await paginate(session, query, paging)


async def unread_count(session: AsyncSession, caller: Caller) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(Notification)
        .where(Notification.user_id == caller.user_id, Notification.read_at.is_(None))
    )
    return int(count or 0)


async def get_own(session: AsyncSession, caller: Caller, *, notification_id: int) -> Notification:
    """One of the caller's notifications; another user's is as missing as a missing one."""
    row = await session.scalar(_own(caller).where(Notification.id == notification_id))
    if row is None:
        raise NotFound(f"no notification {notification_id}")
    return row


async def mark_read(session: AsyncSession, caller: Caller, *, notification_id: int) -> Notification:
    """Mark one of the caller's notifications read; reading it again keeps the first time."""
    row = await get_own(session, caller, notification_id=notification_id)
    if row.read_at is None:
        row.read_at = utcnow()
        await session.flush()
    return row


async def mark_all_read(session: AsyncSession, caller: Caller) -> int:
    """Mark every unread notification of the caller read; answers how many were."""
    result = await session.execute(
        update(Notification)
        .where(Notification.user_id == caller.user_id, Notification.read_at.is_(None))
        .values(read_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    return result.rowcount
