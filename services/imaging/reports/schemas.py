"""Report payloads: `ReportCreate` from the radiologist, `ReportRead` for origin and provider."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, StringConstraints

from services.imaging.reports.models import ImagingReport
from services.imaging.shares.models import ImagingShare

FINDINGS_MAX = 20_000
IMPRESSION_MAX = 4_000

Findings = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=FINDINGS_MAX)
]
Impression = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=IMPRESSION_MAX)
]


class ReportCreate(BaseModel):
    findings: Findings
    impression: Impression


class ReportRead(BaseModel):
    id: int
    share_id: int
    referral_id: int
    shared_study_uid: str | None
    findings: str
    impression: str
    author_id: int
    author_name: str
    signed_at: datetime

    @classmethod
    def of(cls, row: ImagingReport, share: ImagingShare) -> ReportRead:
        return cls(
            id=row.id,
            share_id=share.id,
            referral_id=share.referral_id,
            shared_study_uid=share.shared_study_uid,
            findings=row.findings,
            impression=row.impression,
            author_id=row.author_id,
            author_name=row.author_name,
            signed_at=row.signed_at,
        )
