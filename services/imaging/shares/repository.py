"""Every query of the shares domain, visibility included.

The referral a share is made for belongs to the referral service, which this
service does not import: `referral_for_share` reads the few columns it needs
through literal table clauses, read-only.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import JSON, Select, and_, bindparam, column, or_, select, table
from sqlalchemy.ext.asyncio import AsyncSession

from services.imaging.shares.models import ImagingShare, ShareStatus

_referrals = table(
    "referrals",
    column("id"),
    column("origin_id"),
    column("provider_id"),
    column("agreement_id"),
    column("line_id"),
    column("patient_id"),
    column("specialty"),
    column("status"),
    column("study_uids", JSON),
)


@dataclass(frozen=True, slots=True)
class ReferralFacts:
    """What sharing needs to know of a referral, as the referral service stored it."""

    id: int
    origin_id: int
    provider_id: int | None
    agreement_id: int | None
    line_id: int | None
    patient_id: int
    specialty: str
    status: str
    study_uids: tuple[str, ...]


async def referral_for_share(
    session: AsyncSession, *, referral_id: int, origin_id: int
) -> ReferralFacts | None:
    """The referral if `origin_id` is its origin; None when missing or not theirs."""
    row = (
        await session.execute(
            select(_referrals).where(
                _referrals.c.id == referral_id, _referrals.c.origin_id == origin_id
            )
        )
    ).one_or_none()
    if row is None:
        return None
    return ReferralFacts(
        id=int(row.id),
        origin_id=int(row.origin_id),
        provider_id=row.provider_id,
        agreement_id=row.agreement_id,
        line_id=row.line_id,
        patient_id=int(row.patient_id),
        specialty=str(row.specialty),
        status=str(row.status),
        study_uids=tuple(row.study_uids or ()),
    )


def visible(institution_id: int) -> Select[ImagingShare]:
    """Shares an institution may see: those it made (origin) and those made for it (provider)."""
    return select(ImagingShare).where(
        or_(ImagingShare.origin_id == institution_id, ImagingShare.provider_id == institution_id)
    )


def listing(institution_id: int) -> Select[ImagingShare]:
    return visible(institution_id).order_by(ImagingShare.created_at.desc(), ImagingShare.id.desc())


async def get(session: AsyncSession, *, share_id: int, institution_id: int) -> ImagingShare | None:
    found: ImagingShare | None = await session.scalar(
        visible(institution_id).where(ImagingShare.id == share_id)
    )
    return found


async def ready_share(
    session: AsyncSession, *, referral_id: int, study_uid: str
) -> ImagingShare | None:
    found: ImagingShare | None = await session.scalar(
        select(ImagingShare)
        .where(
            ImagingShare.referral_id == referral_id,
            ImagingShare.study_uid == study_uid,
            ImagingShare.status == ShareStatus.READY.value,
        )
        .order_by(ImagingShare.id)
        .limit(1)
    )
    return found


async def copy_still_used(session: AsyncSession, *, shared_study_uid: str, but: int) -> bool:
    """Does another ready share serve the same de-identified copy (same agreement, same study)?"""
    found = await session.scalar(
        select(ImagingShare.id).where(
            ImagingShare.shared_study_uid == shared_study_uid,
            ImagingShare.status == ShareStatus.READY.value,
            ImagingShare.id != but,
        )
    )
    return found is not None


_READABLE = and_(
    ImagingShare.status == ShareStatus.READY.value,
    or_(
        ImagingShare.provider_id == bindparam("institution_id"),
        ImagingShare.origin_id == bindparam("institution_id"),
    ),
)
"""What an institution may read through DICOMweb: its ready shares, as provider or origin."""
_MAY_READ = (
    select(ImagingShare.id)
    .where(_READABLE, ImagingShare.shared_study_uid == bindparam("study_uid"))
    .limit(1)
)
_VISIBLE = select(ImagingShare.shared_study_uid).where(
    _READABLE, ImagingShare.shared_study_uid.is_not(None)
)
# Built once: every DICOMweb request asks one of them, and building the expression cost more
# than running it (a third of a WADO-RS redirect's 6 ms, most of it in SQLAlchemy's operators).


async def may_read_study(session: AsyncSession, *, institution_id: int, study_uid: str) -> bool:
    """Whether an institution may read this de-identified study: one of the studies
    `visible_study_uids` gives, in one indexed look-up however many shares it has."""
    found = await session.scalar(
        _MAY_READ, {"study_uid": study_uid, "institution_id": institution_id}
    )
    return found is not None


async def visible_study_uids(session: AsyncSession, *, institution_id: int) -> set[str]:
    """The de-identified studies an institution may read through DICOMweb: of its ready shares."""
    rows = await session.scalars(_VISIBLE, {"institution_id": institution_id})
    return {uid for uid in rows if uid}
