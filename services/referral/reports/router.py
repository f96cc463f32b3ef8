"""HTTP routes of reports: an agreement's activity over a period, as JSON or CSV."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from services.referral.reports import schemas as s
from services.referral.reports import service
from shared.db import utcnow
from shared.identity.deps import CurrentUser, Session

router = APIRouter(tags=["reports"])
CSV = "text/csv; charset=utf-8"


@router.get(
    "/api/reports/activity",
    response_model=s.ActivityRead,
    responses={200: {"content": {CSV: {}}, "description": "the report, as JSON or as CSV"}},
)
async def activity(
    session: Session,
    caller: CurrentUser,
    agreement_id: Annotated[int, Query(gt=0)],
    start: Annotated[
        date | None,
        Query(alias="from", description="first day (YYYY-MM-DD); defaults to 12 months back"),
    ] = None,
    end: Annotated[
        date | None, Query(alias="to", description="last day, included; defaults to today")
    ] = None,
    format_: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
) -> s.ActivityRead | Response:
    """An agreement's activity: counts by service, specialty, outcome and month, and the median response time.

    Computed from the usage ledger, with days and months read in the
    agreement's time zone. For coordinators, auditors and admins of a party
    institution, and for the platform operator; at most five years at a time.
    """
    agreement, result = await service.activity(
        session, caller, agreement_id=agreement_id, start=start, end=end, now=utcnow()
    )
    if format_ == "csv":
        name = f"activity-{agreement.code}-{result.start.isoformat()}-{result.end.isoformat()}.csv"
        return Response(
            service.to_csv(result),
            media_type=CSV,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return service.read(result, agreement, caller.lang)
