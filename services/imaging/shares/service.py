"""Sharing a study with a referral's provider, listing shares, revoking them.

A share (PS3.15 Annex E under the coverage line's data terms):

1. the caller's institution is the referral's origin, the referral is with a
   provider, and `decide()` allows imaging_review to that provider;
2. every instance of the study is read from the origin's own store and
   de-identified in memory, with the referral's pseudonym and a key derived
   per agreement (so the same study shared twice gets the same UIDs);
3. every outgoing file is read back and scanned by the leak gate for the
   identifiers of the whole original study;
4. only when all instances passed are they put in the shared store, apart
   from the originals. Any hit, or burned-in annotation, blocks the share:
   nothing is stored, the blocked share and the refusal are recorded.

The originals and the pseudonym mapping (there is none: the pseudonym is a
keyed hash) never leave the origin's store and this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import io
from dataclasses import dataclass
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from sqlalchemy.ext.asyncio import AsyncSession

from services.imaging import deid
from services.imaging.locations import originals, shared_copies
from services.imaging.shares import repository as repo
from services.imaging.shares.deidentify import StudyBlocked, deidentify_study
from services.imaging.shares.models import ImagingShare, ShareStatus
from services.imaging.shares.schemas import ShareCreate
from services.imaging.stores import NotFoundInStore, StoreError, part10
from shared import audit
from shared.db import utcnow
from shared.entitlements.model import Identification, ServiceKind, UsageState
from shared.identity.deps import Caller, require
from shared.identity.models import Role
from shared.pagination import PageParams, Pagination, paginate
from shared.platform import Platform
from shared.problems import EntitlementRefused, Forbidden, NotFound, Unprocessable
from shared.pseudonyms import pseudonym
from shared.registry import ledger
from shared.registry import service as registry
from shared.registry.models import CoverageLine, Institution

RESOURCE = "imaging_share"
SHARING_ROLES = (Role.RADIOLOGIST, Role.REFERRING_PHYSICIAN, Role.COORDINATOR)
SHAREABLE_REFERRAL_STATUSES = frozenset({"offered", "accepted", "scheduled"})


def agreement_key(secret: bytes, agreement_id: int) -> bytes:
    """The per-agreement key of keyed UIDs and date shifts: unlinkable across agreements."""
    return hmac.new(secret, f"imaging:{agreement_id}".encode(), hashlib.sha256).digest()


def options_for(
    identification: Identification, terms: dict[str, Any] | None = None
) -> deid.Options:
    """PS3.15 options from a line's data terms and its imaging terms.

    By default pseudonymised keeps shifted dates and patient characteristics (E.3.6,
    E.3.7) and cleaned descriptors (E.3.5), and anonymised is the Basic Profile alone;
    the line's `imaging` terms (`shared.registry.schemas.ImagingTerms`) override each
    option. Identified data does not go through this path.
    """
    pseudonymised = identification is Identification.PSEUDONYMISED
    chosen = {
        "retain_dates_shifted": pseudonymised,
        "retain_patient_characteristics": pseudonymised,
        "retain_device_identity": False,
        "clean_descriptors": pseudonymised,
    }
    terms = terms or {}
    for name in chosen:
        if terms.get(name) is not None:
            chosen[name] = bool(terms[name])
    safe = frozenset(
        (str(tag["creator"]), int(tag["group"]) << 16 | int(tag["element"]))
        for tag in terms.get("safe_private_tags") or ()
    )
    return deid.Options(
        **chosen, allow_burned_in=bool(terms.get("allow_burned_in")), safe_private_tags=safe
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    share: ImagingShare
    created: bool


def _study_uid(data: bytes) -> str:
    ds: Dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return str(ds.StudyInstanceUID)


async def share(
    session: AsyncSession, caller: Caller, *, platform: Platform, body: ShareCreate
) -> Outcome:
    """Share a study of the caller's institution with a referral's provider (see module docstring)."""
    require(caller, *SHARING_ROLES, action="imaging.share")
    referral = await repo.referral_for_share(
        session, referral_id=body.referral_id, origin_id=caller.institution_id
    )
    if referral is None:
        raise NotFound("no such referral")
    if body.study_uid not in referral.study_uids:
        raise Unprocessable("the referral does not name this study")
    if (
        referral.status not in SHAREABLE_REFERRAL_STATUSES
        or referral.provider_id is None
        or referral.agreement_id is None
    ):
        rule = "referral_not_with_provider"
        raise Forbidden(
            f"a referral that is {referral.status} is not with a provider",
            rule=rule,
            refusal=audit.Refusal(
                caller.actor,
                "imaging.share",
                rule=rule,
                resource_type="referral",
                resource_id=referral.id,
            ),
        )
    existing = await repo.ready_share(session, referral_id=referral.id, study_uid=body.study_uid)
    if existing is not None:
        return Outcome(existing, created=False)

    provider = referral.provider_id
    decision = await registry.decide(
        session,
        requester=caller.institution_id,
        provider=provider,
        service=ServiceKind.IMAGING_REVIEW,
        specialty=referral.specialty,
    )
    if not decision.allowed or decision.data_terms is None:
        reasons = decision.explain(caller.lang)
        raise EntitlementRefused(
            reasons[0] if reasons else decision.rule,
            rule=decision.rule,
            reasons=reasons,
            refusal=audit.Refusal(
                caller.actor,
                "imaging.share",
                rule=decision.rule,
                resource_type="referral",
                resource_id=referral.id,
                counterpart_id=provider,
                reasons=reasons,
            ),
        )
    identification = decision.data_terms.identification
    line = await session.get(CoverageLine, decision.line_id) if decision.line_id else None
    terms = line.imaging if line is not None else None

    institution = await session.get(Institution, caller.institution_id)
    if institution is None:  # the caller's own institution: cannot vanish mid-request
        raise NotFound("no such study")
    async with originals(platform, institution) as store:
        try:
            files = [data async for data in store.study_files(body.study_uid)]
        except NotFoundInStore as exc:
            raise NotFound("no such study in the institution's store") from exc
    if not files:
        raise NotFound("no such study in the institution's store")

    secret = platform.settings.pseudonym_secret.encode()
    row = ImagingShare(
        study_uid=body.study_uid,
        referral_id=referral.id,
        origin_id=caller.institution_id,
        provider_id=provider,
        agreement_id=decision.agreement_id,
        line_id=decision.line_id,
        identification=identification.value,
        status=ShareStatus.READY.value,
        instances=len(files),
        created_by_id=caller.user_id,
    )
    try:
        if identification is Identification.IDENTIFIED:
            # The line lets identified data cross: the originals go, still stored apart.
            outgoing = files
        else:
            outgoing = await asyncio.to_thread(
                deidentify_study,
                files,
                key=agreement_key(secret, referral.agreement_id),
                pseudonym=pseudonym(secret, referral.agreement_id, referral.patient_id),
                options=options_for(identification, terms),
            )
    except StudyBlocked as blocked:
        row.status, row.blocked_reason = ShareStatus.BLOCKED.value, blocked.rule
        session.add(row)
        await session.flush()
        await audit.record(
            session,
            caller.actor,
            "imaging.share",
            resource_type=RESOURCE,
            resource_id=row.id,
            counterpart_id=provider,
            outcome="refused",
            rule=blocked.rule,
            reasons=[blocked.reason],
            details={"referral": referral.id, "instances": len(files)},
        )
        return Outcome(row, created=True)

    row.shared_study_uid = _study_uid(outgoing[0])
    session.add(row)
    await session.flush()
    await ledger.hold(
        session,
        caller.actor,
        requester=caller.institution_id,
        provider=provider,
        service=ServiceKind.IMAGING_REVIEW,
        specialty=referral.specialty,
        resource_type=RESOURCE,
        resource_id=str(row.id),
        state=UsageState.CONSUMED,
        lang=caller.lang,
    )
    await _store(
        session, outgoing, shared_study_uid=row.shared_study_uid, row=row, platform=platform
    )
    await audit.record(
        session,
        caller.actor,
        "imaging.share",
        resource_type=RESOURCE,
        resource_id=row.id,
        counterpart_id=provider,
        outcome="allowed",
        rule=decision.rule,
        reasons=decision.explain(caller.lang),
        details={
            "referral": referral.id,
            "agreement": decision.agreement_code,
            "line": decision.line_id,
            "identification": identification.value,
            "instances": len(outgoing),
        },
    )
    return Outcome(row, created=True)


STORE_WINDOW = 8
"""Copies stored together: one look-up and one upload to the shared Orthanc for each window,
where storing them one by one took a look-up and an upload per instance."""


def _checked(outgoing: list[bytes]) -> list[part10.Part10]:
    """Every copy checked as any store checks a file (blocking: run it in a thread)."""
    return [part10.read(data) for data in outgoing]


async def _store(
    session: AsyncSession,
    outgoing: list[bytes],
    *,
    shared_study_uid: str,
    row: ImagingShare,
    platform: Platform,
) -> None:
    """Put every copy in the shared store; on failure take back what went in (if unused)."""
    async with shared_copies(platform) as store:
        try:
            parts = await asyncio.to_thread(_checked, outgoing)
            for start in range(0, len(parts), STORE_WINDOW):
                for result in await store.put_checked(parts[start : start + STORE_WINDOW]):
                    if isinstance(result, StoreError):
                        raise result
        except StoreError:
            if not await repo.copy_still_used(
                session, shared_study_uid=shared_study_uid, but=row.id
            ):
                # Nothing was stored, or the store is down: the row rolls back anyway.
                with contextlib.suppress(StoreError):
                    await store.delete_study(shared_study_uid)
            raise


async def list_shares(
    session: AsyncSession, caller: Caller, *, paging: PageParams
) -> tuple[list[ImagingShare], Pagination]:
    """The shares the caller's institution made or received, newest first."""
    rows, pagination = await paginate(session, repo.listing(caller.institution_id), paging)
    return list(rows), pagination


async def get_share(session: AsyncSession, caller: Caller, *, share_id: int) -> ImagingShare:
    row = await repo.get(session, share_id=share_id, institution_id=caller.institution_id)
    if row is None:
        raise NotFound("no such share")
    return row


async def revoke(
    session: AsyncSession, caller: Caller, *, platform: Platform, share_id: int
) -> ImagingShare:
    """The origin withdraws a share: the de-identified copy leaves the shared store."""
    row = await get_share(session, caller, share_id=share_id)
    if row.origin_id != caller.institution_id:
        rule = "origin_only"
        raise Forbidden(
            "only the institution that shared a study may revoke the share",
            rule=rule,
            refusal=audit.Refusal(
                caller.actor,
                "imaging.share.revoke",
                rule=rule,
                resource_type=RESOURCE,
                resource_id=row.id,
            ),
        )
    require(caller, *SHARING_ROLES, action="imaging.share.revoke")
    if row.status != ShareStatus.READY.value:
        return row
    row.status, row.revoked_at = ShareStatus.REVOKED.value, utcnow()
    await session.flush()
    if row.shared_study_uid and not await repo.copy_still_used(
        session, shared_study_uid=row.shared_study_uid, but=row.id
    ):
        async with shared_copies(platform) as store:
            with contextlib.suppress(NotFoundInStore):  # already gone: emptied by hand
                await store.delete_study(row.shared_study_uid)
    await ledger.release(session, caller.actor, resource_type=RESOURCE, resource_id=str(row.id))
    await audit.record(
        session,
        caller.actor,
        "imaging.share.revoke",
        resource_type=RESOURCE,
        resource_id=row.id,
        counterpart_id=row.provider_id,
    )
    return row
