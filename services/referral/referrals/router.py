"""HTTP routes of referrals: submission, worklists, the workflow actions, report, history, attachments."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, status
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from services.referral.referrals import attachments as files
from services.referral.referrals import idempotency, service, views
from services.referral.referrals import repository as repo
from services.referral.referrals import schemas as s
from services.referral.referrals.models import Attachment
from services.referral.workflow import Action, Status
from shared import audit
from shared.db import utcnow
from shared.entitlements.model import Identification, Urgency
from shared.identity.deps import CurrentUser, PlatformDep, Session
from shared.pagination import Page, Paging, paginate
from shared.problems import BadRequest, Forbidden, NotFound, PayloadTooLarge
from shared.registry import repository as registry_repo

router = APIRouter(tags=["referrals"])


@router.post("/api/referrals", response_model=s.ReferralRead, status_code=status.HTTP_201_CREATED)
async def submit(
    session: Session,
    platform: PlatformDep,
    caller: CurrentUser,
    data: s.ReferralCreate,
    idempotency_key: Annotated[
        str | None, Header(description="retry safely with the same key")
    ] = None,
) -> Any:
    """Submit a case; it is routed at once to the best entitled provider (the ranking is kept).

    A key still in progress is 409 with `Retry-After`."""
    claim = None
    if idempotency_key is not None:
        claimed = await idempotency.claim(
            platform.database,
            user_id=caller.user_id,
            key=idempotency_key,
            body=data.model_dump(mode="json"),
        )
        if isinstance(claimed, dict):
            return JSONResponse(
                claimed["body"],
                status_code=claimed["status_code"],
                headers={"Idempotent-Replayed": "true"},
            )
        claim = claimed
    try:
        now = utcnow()
        referral = await service.submit(session, caller, data=data, now=now)
        body = await views.read(session, platform, caller, referral, now=now)
        if claim is not None:
            await idempotency.complete(
                session, claim, status_code=201, body=body.model_dump(mode="json")
            )
        return body
    except BaseException:
        if claim is not None:
            await session.rollback()  # free the request's transaction before withdrawing the claim
            await idempotency.withdraw(platform.database, claim)
        raise


@router.get("/api/referrals", response_model=Page[s.ReferralSummary])
async def worklist(
    session: Session,
    caller: CurrentUser,
    paging: Paging,
    box: Annotated[
        str,
        Query(
            pattern="^(inbox|outbox|all)$",
            description="inbox: held as provider; outbox: sent; all: everything visible",
        ),
    ] = "all",
    status_: Annotated[list[Status] | None, Query(alias="status")] = None,
    urgency: Urgency | None = None,
    specialty: Annotated[str | None, Query(max_length=60)] = None,
) -> Page[s.ReferralSummary]:
    """Worklists, most urgent and longest waiting first."""
    query = repo.worklist(
        caller.institution_id,
        box=box,
        status=[x.value for x in status_ or []],
        urgency=urgency.value if urgency else None,
        specialty=specialty,
    )
    rows, pagination = await paginate(session, query, paging)
    ids = {r.origin_id for r in rows} | {r.provider_id for r in rows if r.provider_id}
    codes = {
        i: row.code for i, row in (await registry_repo.institutions_by_id(session, ids)).items()
    }
    now = utcnow()
    items = []
    for row in rows:
        ident = await views.identification_for(session, caller, row)
        items.append(views.summary(caller, row, codes, now=now, identification=ident))
    return Page(items=items, pagination=pagination)


@router.get("/api/referrals/{referral_id}", response_model=s.ReferralRead)
async def get_referral(
    session: Session, platform: PlatformDep, caller: CurrentUser, referral_id: int
) -> s.ReferralRead:
    """One referral, with the patient as the caller's side may see it and the routing reasons."""
    referral = await service.get(session, caller, referral_id)
    return await views.read(session, platform, caller, referral, now=utcnow())


async def _act(
    session: Any, platform: Any, caller: Any, referral_id: int, action: Action, body: Any
) -> s.ReferralRead:
    now = utcnow()
    referral = await service.act(
        session, caller, referral_id=referral_id, action=action, body=body, now=now
    )
    return await views.read(session, platform, caller, referral, now=now)


@router.post("/api/referrals/{referral_id}/submit", response_model=s.ReferralRead)
async def submit_draft(
    session: Session, platform: PlatformDep, caller: CurrentUser, referral_id: int
) -> s.ReferralRead:
    """Submit a draft: it is routed like a new referral."""
    now = utcnow()
    referral = await service.submit_draft(session, caller, referral_id=referral_id, now=now)
    await audit.record(
        session, caller.actor, "referral.submit", resource_type="referral", resource_id=referral.id
    )
    return await views.read(session, platform, caller, referral, now=now)


@router.post("/api/referrals/{referral_id}/accept", response_model=s.ReferralRead)
async def accept(
    session: Session, platform: PlatformDep, caller: CurrentUser, referral_id: int
) -> s.ReferralRead:
    """The provider's specialist takes the referral; its quota unit is consumed."""
    return await _act(session, platform, caller, referral_id, Action.ACCEPT, None)


@router.post("/api/referrals/{referral_id}/decline", response_model=s.ReferralRead)
async def decline(
    session: Session,
    platform: PlatformDep,
    caller: CurrentUser,
    referral_id: int,
    body: s.DeclineBody,
) -> s.ReferralRead:
    """Decline with a reason; the referral is offered to the next entitled provider, if any."""
    return await _act(session, platform, caller, referral_id, Action.DECLINE, body)


@router.post("/api/referrals/{referral_id}/request-info", response_model=s.ReferralRead)
async def request_info(
    session: Session,
    platform: PlatformDep,
    caller: CurrentUser,
    referral_id: int,
    body: s.RequestInfoBody,
) -> s.ReferralRead:
    """Ask the referrer a question; the response clock stops until they answer."""
    return await _act(session, platform, caller, referral_id, Action.REQUEST_INFO, body)


@router.post("/api/referrals/{referral_id}/provide-info", response_model=s.ReferralRead)
async def provide_info(
    session: Session,
    platform: PlatformDep,
    caller: CurrentUser,
    referral_id: int,
    body: s.ProvideInfoBody,
) -> s.ReferralRead:
    """Answer the provider's question; the referral goes back to them."""
    return await _act(session, platform, caller, referral_id, Action.PROVIDE_INFO, body)


@router.post("/api/referrals/{referral_id}/schedule", response_model=s.ReferralRead)
async def schedule(
    session: Session,
    platform: PlatformDep,
    caller: CurrentUser,
    referral_id: int,
    body: s.ScheduleBody,
) -> s.ReferralRead:
    """Schedule an accepted referral: a teleconsultation slot, a visiting mission, or a transfer date."""
    return await _act(session, platform, caller, referral_id, Action.SCHEDULE, body)


@router.post("/api/referrals/{referral_id}/complete", response_model=s.ReferralRead)
async def complete(
    session: Session,
    platform: PlatformDep,
    caller: CurrentUser,
    referral_id: int,
    body: s.ReportBody,
) -> s.ReferralRead:
    """Complete with the specialist's report, which goes back to the referrer."""
    return await _act(session, platform, caller, referral_id, Action.COMPLETE, body)


@router.post("/api/referrals/{referral_id}/cancel", response_model=s.ReferralRead)
async def cancel(
    session: Session,
    platform: PlatformDep,
    caller: CurrentUser,
    referral_id: int,
    body: s.CancelBody,
) -> s.ReferralRead:
    """The referrer withdraws the referral; any quota unit it held is released."""
    return await _act(session, platform, caller, referral_id, Action.CANCEL, body)


@router.post("/api/referrals/{referral_id}/reroute", response_model=s.ReferralRead)
async def reroute(
    session: Session,
    platform: PlatformDep,
    caller: CurrentUser,
    referral_id: int,
    body: s.RerouteBody,
) -> s.ReferralRead:
    """A coordinator of the referring institution overrides the routing (audited)."""
    return await _act(session, platform, caller, referral_id, Action.REROUTE, body)


@router.get("/api/referrals/{referral_id}/report", response_model=s.ReportRead)
async def report(session: Session, caller: CurrentUser, referral_id: int) -> s.ReportRead:
    """The specialist's answer back to the referrer."""
    referral = await service.get(session, caller, referral_id)
    found = views.report_of(referral)
    if found is None:
        raise NotFound(f"referral {referral_id} has no report yet")
    return found


@router.post("/api/referrals/{referral_id}/report/acknowledge", response_model=s.ReferralRead)
async def acknowledge(
    session: Session,
    platform: PlatformDep,
    caller: CurrentUser,
    referral_id: int,
    body: s.AcknowledgeBody,
) -> s.ReferralRead:
    """The referrer has read the report and records the patient's outcome; the referral closes."""
    return await _act(session, platform, caller, referral_id, Action.ACKNOWLEDGE, body)


@router.get("/api/referrals/{referral_id}/history", response_model=list[s.EventRead])
async def history(session: Session, caller: CurrentUser, referral_id: int) -> list[s.EventRead]:
    """The referral's timeline, oldest first."""
    referral = await service.get(session, caller, referral_id)
    return [views.event_read(e, caller.lang) for e in await repo.events(session, referral.id)]


@router.post(
    "/api/referrals/{referral_id}/attachments",
    response_model=s.AttachmentRead,
    status_code=status.HTTP_201_CREATED,
)
async def attach(
    request: Request, session: Session, platform: PlatformDep, caller: CurrentUser, referral_id: int
) -> s.AttachmentRead:
    """Attach a PDF or image (multipart field `file`; `contains_identifiers` true unless it is de-identified)."""
    referral = await service.get(session, caller, referral_id)
    if caller.institution_id != referral.origin_id:
        raise Forbidden("only the referring institution attaches files", rule="origin_only")
    limit = platform.settings.attachment_max_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise PayloadTooLarge(f"attachments are limited to {limit} bytes")
    try:
        form = await request.form(max_files=1, max_fields=4)
    except (MultiPartException, ValueError, AssertionError) as exc:
        raise BadRequest(f"send multipart/form-data with one file: {exc}") from exc
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise BadRequest("the multipart field `file` is missing")
        content = await upload.read(limit + 1)
        filename = files.clean_filename(upload.filename)
        flag = str(form.get("contains_identifiers", "true")).lower() not in ("false", "0", "no")
    finally:
        await form.close()
    stored, media_type, digest = files.store(
        platform.settings.data_dir / "attachments", content, limit=limit
    )
    row = Attachment(
        referral_id=referral.id,
        stored_name=stored,
        filename=filename,
        media_type=media_type,
        size=len(content),
        sha256=digest,
        contains_identifiers=flag,
        uploaded_by_id=caller.user_id,
        uploaded_at=utcnow(),
    )
    session.add(row)
    await session.flush()
    await audit.record(
        session,
        caller.actor,
        "referral.attach",
        resource_type="referral",
        resource_id=referral.id,
        details={"attachment": row.id, "media_type": media_type},
    )
    return s.AttachmentRead.model_validate(row, from_attributes=True)


@router.get("/api/referrals/{referral_id}/attachments", response_model=list[s.AttachmentRead])
async def list_attachments(
    session: Session, caller: CurrentUser, referral_id: int
) -> list[s.AttachmentRead]:
    """The referral's attachments (a partner sees those its data terms let it open)."""
    referral = await service.get(session, caller, referral_id)
    identification = await views.identification_for(session, caller, referral)
    rows = await repo.attachments(session, referral.id)
    return [
        s.AttachmentRead.model_validate(r, from_attributes=True)
        for r in rows
        if _may_open(identification, r)
    ]


@router.get("/api/referrals/{referral_id}/attachments/{attachment_id}")
async def download(
    session: Session,
    platform: PlatformDep,
    caller: CurrentUser,
    referral_id: int,
    attachment_id: int,
) -> Response:
    """Download an attachment; files with identifiers stay home unless the line allows identified data."""
    referral = await service.get(session, caller, referral_id)
    identification = await views.identification_for(session, caller, referral)
    row = next(
        (r for r in await repo.attachments(session, referral.id) if r.id == attachment_id), None
    )
    if row is None:
        raise NotFound(f"no attachment {attachment_id}")
    if not _may_open(identification, row):
        rule = "data_terms"
        raise Forbidden(
            "this file carries patient identifiers and the agreement shares only "
            f"{identification.value} data",
            rule=rule,
            refusal=audit.Refusal(
                caller.actor,
                "referral.attachment",
                rule=rule,
                resource_type="referral",
                resource_id=referral.id,
            ),
        )
    if caller.institution_id != referral.origin_id:
        await audit.record(
            session,
            caller.actor,
            "referral.attachment",
            resource_type="referral",
            resource_id=referral.id,
            counterpart_id=referral.origin_id,
            outcome="allowed",
            details={"attachment": row.id},
        )
    path = platform.settings.data_dir / "attachments" / row.stored_name
    if not path.exists():
        raise NotFound("the file is missing from the store")
    return FileResponse(path, media_type=row.media_type, filename=row.filename)


def _may_open(identification: Identification, row: Attachment) -> bool:
    return identification is Identification.IDENTIFIED or not row.contains_identifiers
