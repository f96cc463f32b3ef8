"""Signing and reading the radiologist's report on a share.

Who may do what:

- read: the share's origin and provider; anyone else gets 404, as for the share;
- sign: a radiologist of the share's provider (403 for the origin and for other
  roles at the provider), on a ready share (409 when revoked or blocked), once
  (409 when the share already has its report).

Signing is audited and queues the delivery into the referral's timeline, sent
only once the request's transaction commits.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.imaging.reports.models import ImagingReport
from services.imaging.reports.schemas import ReportCreate
from services.imaging.shares import repository as shares_repo
from services.imaging.shares.models import ImagingShare, ShareStatus
from shared import audit
from shared.db import utcnow
from shared.identity.deps import Caller, require
from shared.identity.models import Role
from shared.problems import Conflict, Forbidden, NotFound
from shared.tasks import send_after_commit

RESOURCE = "imaging_report"
DELIVERY_TASK = "referrals.record_imaging_report_task"
SUMMARY_MAX = 500
"""How much of the impression travels to the referral's timeline."""


async def _share(session: AsyncSession, caller: Caller, share_id: int) -> ImagingShare:
    share = await shares_repo.get(session, share_id=share_id, institution_id=caller.institution_id)
    if share is None:
        raise NotFound("no such share")
    return share


async def _report_of(session: AsyncSession, share_id: int) -> ImagingReport | None:
    found: ImagingReport | None = await session.scalar(
        select(ImagingReport).where(ImagingReport.share_id == share_id)
    )
    return found


async def get_report(
    session: AsyncSession, caller: Caller, *, share_id: int
) -> tuple[ImagingReport, ImagingShare]:
    """The report on a share the caller's institution made or received; 404 when none."""
    share = await _share(session, caller, share_id)
    report = await _report_of(session, share.id)
    if report is None:
        raise NotFound("this share has no report yet")
    return report, share


def _refused(caller: Caller, share: ImagingShare, rule: str, detail: str) -> Forbidden:
    return Forbidden(
        detail,
        rule=rule,
        refusal=audit.Refusal(
            caller.actor,
            "imaging.report.sign",
            rule=rule,
            resource_type="imaging_share",
            resource_id=share.id,
        ),
    )


async def sign(
    session: AsyncSession,
    caller: Caller,
    *,
    share_id: int,
    body: ReportCreate,
    now: datetime | None = None,
) -> tuple[ImagingReport, ImagingShare]:
    """A provider's radiologist writes and signs the report (see the module docstring)."""
    share = await _share(session, caller, share_id)
    if share.provider_id != caller.institution_id:
        raise _refused(
            caller, share, "provider_only", "only the provider's radiologists report on a share"
        )
    require(caller, Role.RADIOLOGIST, action="imaging.report.sign")
    if share.status != ShareStatus.READY.value:
        raise Conflict(f"a {share.status} share takes no report", rule="share_not_ready")
    if await _report_of(session, share.id) is not None:
        raise Conflict("this share already has a signed report", rule="report_already_signed")
    report = ImagingReport(
        share_id=share.id,
        findings=body.findings,
        impression=body.impression,
        author_id=caller.user_id,
        author_name=caller.display_name,
        signed_at=now or utcnow(),
    )
    session.add(report)
    try:
        await session.flush()
    except IntegrityError as exc:  # a second signing raced this one past the check above
        raise Conflict(
            "this share already has a signed report", rule="report_already_signed"
        ) from exc
    await audit.record(
        session,
        caller.actor,
        "imaging.report.sign",
        resource_type=RESOURCE,
        resource_id=report.id,
        counterpart_id=share.origin_id,
        details={"share": share.id, "referral": share.referral_id},
    )
    send_after_commit(
        session,
        DELIVERY_TASK,
        share.referral_id,
        share.id,
        report={
            "report_id": report.id,
            "author_id": report.author_id,
            "author_name": report.author_name,
            "institution_id": share.provider_id,
            "signed_at": report.signed_at.isoformat(),
            "impression": report.impression[:SUMMARY_MAX],
        },
    )
    return report, share
