"""Starting a forwarding, reading its progress, and the task body that pushes the instances.

`forward` is what `tasks.forward_share_task` runs. It is safe to run twice and
to stop anywhere: an instance is sent only if it has no `ForwardedInstance`
row and the partner does not already hold it, and each confirmation is
committed on its own. When the partner cannot be reached it records the error,
counts the attempt and raises `RetryLater` with the backoff delay, unless this
was the last attempt, in which case the forwarding is `failed`.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.imaging.forwarding.models import ForwardedInstance, Forwarding, ForwardingState
from services.imaging.locations import shared_copies
from services.imaging.shares import repository as shares_repo
from services.imaging.shares.models import ImagingShare, ShareStatus
from services.imaging.stores import NotFoundInStore, OrthancStore, StoreError, StoreUnavailable
from shared import audit
from shared.db import utcnow
from shared.identity.deps import Caller, require
from shared.identity.models import Role
from shared.platform import Platform
from shared.problems import Conflict, Forbidden, NotFound, Unprocessable
from shared.registry.models import Institution
from shared.tasks import send_after_commit

RESOURCE = "imaging_share"
TASK = "imaging.forward_share_task"
FORWARDING_ROLES = (Role.COORDINATOR, Role.RADIOLOGIST)
MAX_RETRIES = 8


class RetryLater(Exception):
    """The partner store could not be reached; try again in `countdown` seconds."""

    def __init__(self, countdown: int, reason: str) -> None:
        super().__init__(reason)
        self.countdown = countdown


def backoff(attempts: int) -> int:
    """Seconds before the next attempt: 10, 20, 40, ... at most ten minutes."""
    return int(min(2**attempts * 5, 600))


# -- queries -------------------------------------------------------------------------------


async def _for_share(session: AsyncSession, share_id: int) -> Forwarding | None:
    found: Forwarding | None = await session.scalar(
        select(Forwarding).where(Forwarding.share_id == share_id)
    )
    return found


async def _confirmed(session: AsyncSession, forwarding_id: int) -> set[str]:
    rows = await session.scalars(
        select(ForwardedInstance.sop_instance_uid).where(
            ForwardedInstance.forwarding_id == forwarding_id
        )
    )
    return set(rows)


async def _count_confirmed(session: AsyncSession, forwarding_id: int) -> int:
    count = await session.scalar(
        select(func.count()).where(ForwardedInstance.forwarding_id == forwarding_id)
    )
    return int(count or 0)


# -- the API side --------------------------------------------------------------------------


async def _visible_share(session: AsyncSession, caller: Caller, share_id: int) -> ImagingShare:
    share = await shares_repo.get(session, share_id=share_id, institution_id=caller.institution_id)
    if share is None:
        raise NotFound("no such share")
    return share


async def start(session: AsyncSession, caller: Caller, *, share_id: int) -> tuple[Forwarding, bool]:
    """Forward a ready share to its provider's store (origin only); (forwarding, created).

    A forwarding that failed is started again with its attempts reset; one pending,
    running or done is returned as it is (a pending one is queued again: harmless,
    the task can run twice).
    """
    share = await _visible_share(session, caller, share_id)
    if share.origin_id != caller.institution_id:
        rule = "origin_only"
        raise Forbidden(
            "only the institution that shared a study may forward it",
            rule=rule,
            refusal=audit.Refusal(
                caller.actor,
                "imaging.forward",
                rule=rule,
                resource_type=RESOURCE,
                resource_id=share.id,
            ),
        )
    require(caller, *FORWARDING_ROLES, action="imaging.forward")
    if share.status != ShareStatus.READY.value or share.shared_study_uid is None:
        raise Conflict(f"a share that is {share.status} cannot be forwarded")
    provider = await session.get(Institution, share.provider_id)
    if provider is None or not provider.imaging_store:
        raise Unprocessable("the provider institution has no imaging store to forward to")

    row = await _for_share(session, share.id)
    created = row is None
    if row is None:
        row = Forwarding(
            share_id=share.id,
            target_url=provider.imaging_store,
            state=ForwardingState.PENDING.value,
            total=share.instances,
            created_by_id=caller.user_id,
        )
        session.add(row)
    elif row.state == ForwardingState.FAILED.value:
        row.state, row.attempts, row.next_attempt_at = ForwardingState.PENDING.value, 0, None
        row.target_url, row.updated_at = provider.imaging_store, utcnow()
    await session.flush()
    if row.state != ForwardingState.DONE.value:
        send_after_commit(session, TASK, row.id)
    await audit.record(
        session,
        caller.actor,
        "imaging.forward.start",
        resource_type=RESOURCE,
        resource_id=share.id,
        counterpart_id=share.provider_id,
        details={"forwarding": row.id, "target": row.target_url, "created": created},
    )
    return row, created


async def progress(session: AsyncSession, caller: Caller, *, share_id: int) -> Forwarding:
    """The forwarding of a share the caller's institution may see (origin or provider)."""
    share = await _visible_share(session, caller, share_id)
    row = await _for_share(session, share.id)
    if row is None:
        raise NotFound("this share has not been forwarded")
    return row


# -- the task body -------------------------------------------------------------------------


async def forward(platform: Platform, *, forwarding_id: int, last_attempt: bool = False) -> str:
    """Push every instance not yet confirmed to the partner; the forwarding's state after."""
    database = platform.database
    async with database.transaction() as session:
        row = await session.get(Forwarding, forwarding_id)
        if row is None or row.state == ForwardingState.DONE.value:
            return row.state if row is not None else "missing"
        share = await session.get(ImagingShare, row.share_id)
        if share is None or share.status != ShareStatus.READY.value or not share.shared_study_uid:
            row.state, row.last_error = ForwardingState.FAILED.value, "the share is not ready"
            row.updated_at = utcnow()
            return row.state
        row.state, row.updated_at = ForwardingState.RUNNING.value, utcnow()
        study_uid, target_url = share.shared_study_uid, row.target_url
        origin_id, provider_id, share_id = share.origin_id, share.provider_id, share.id
        confirmed = await _confirmed(session, row.id)

    settings = platform.settings
    try:
        async with (
            shared_copies(platform) as source,
            OrthancStore(
                target_url, settings.orthanc_username, settings.orthanc_password
            ) as target,
        ):
            refs = await source.instances(study_uid)
            async with database.transaction() as session:
                found = await session.get(Forwarding, forwarding_id)
                if found is not None:
                    found.total = len(refs)
            try:
                at_partner = {ref.sop_instance_uid for ref in await target.instances(study_uid)}
            except NotFoundInStore:
                at_partner = set()
            for ref in refs:
                uid = ref.sop_instance_uid
                if uid in confirmed:
                    continue
                if uid not in at_partner:
                    await target.put(await source.get(uid))
                await _confirm(platform, forwarding_id, uid)
    except StoreUnavailable as exc:
        return await _unreachable(platform, forwarding_id, str(exc), last_attempt=last_attempt)
    except StoreError as exc:  # refused or missing: retrying would not help
        await _finish(platform, forwarding_id, ForwardingState.FAILED, error=str(exc))
        return ForwardingState.FAILED.value

    async with database.transaction() as session:
        sent = await _count_confirmed(session, forwarding_id)
        await audit.record(
            session,
            audit.Actor(username="system", institution_id=origin_id),
            "imaging.forward",
            resource_type=RESOURCE,
            resource_id=share_id,
            counterpart_id=provider_id,
            outcome="allowed",
            details={"forwarding": forwarding_id, "target": target_url, "instances": sent},
        )
    await _finish(platform, forwarding_id, ForwardingState.DONE, error=None)
    return ForwardingState.DONE.value


async def _confirm(platform: Platform, forwarding_id: int, sop_instance_uid: str) -> None:
    """Record one instance as held by the partner, in a transaction of its own."""
    try:
        async with platform.database.transaction() as session:
            session.add(
                ForwardedInstance(forwarding_id=forwarding_id, sop_instance_uid=sop_instance_uid)
            )
            await session.flush()
            row = await session.get(Forwarding, forwarding_id)
            if row is not None:
                row.sent, row.updated_at = await _count_confirmed(session, forwarding_id), utcnow()
    except IntegrityError:
        pass  # a concurrent run confirmed it first: the same fact


async def _finish(
    platform: Platform, forwarding_id: int, state: ForwardingState, *, error: str | None
) -> None:
    async with platform.database.transaction() as session:
        row = await session.get(Forwarding, forwarding_id)
        if row is None:
            return
        row.state, row.updated_at, row.next_attempt_at = state.value, utcnow(), None
        row.sent = await _count_confirmed(session, forwarding_id)
        if error is not None:
            row.last_error = error
        elif state is ForwardingState.DONE:
            row.last_error = None


async def _unreachable(
    platform: Platform, forwarding_id: int, error: str, *, last_attempt: bool
) -> str:
    async with platform.database.transaction() as session:
        row = await session.get(Forwarding, forwarding_id)
        if row is None:
            return "missing"
        row.attempts += 1
        row.last_error, row.updated_at = error, utcnow()
        row.sent = await _count_confirmed(session, forwarding_id)
        if last_attempt:
            row.state, row.next_attempt_at = ForwardingState.FAILED.value, None
            return row.state
        countdown = backoff(row.attempts)
        row.state = ForwardingState.PENDING.value
        row.next_attempt_at = utcnow() + timedelta(seconds=countdown)
    raise RetryLater(countdown, error)
