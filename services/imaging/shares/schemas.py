"""Share payloads. The original Study Instance UID is shown to the origin institution only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, StringConstraints

from services.imaging.shares.models import ImagingShare

StudyUID = Annotated[str, StringConstraints(pattern=r"^[0-9]+(\.[0-9]+)*$", max_length=64)]


class ShareCreate(BaseModel):
    study_uid: StudyUID
    referral_id: int


class ShareRead(BaseModel):
    id: int
    study_uid: str | None
    """The original study: None for the provider, which sees `shared_study_uid` only."""
    shared_study_uid: str | None
    referral_id: int
    origin_id: int
    provider_id: int
    agreement_id: int | None
    line_id: int | None
    identification: str
    status: str
    instances: int
    created_at: datetime
    revoked_at: datetime | None
    blocked_reason: str | None

    @classmethod
    def of(cls, row: ImagingShare, institution_id: int) -> ShareRead:
        origin = row.origin_id == institution_id
        return cls(
            id=row.id,
            study_uid=row.study_uid if origin else None,
            shared_study_uid=row.shared_study_uid,
            referral_id=row.referral_id,
            origin_id=row.origin_id,
            provider_id=row.provider_id,
            agreement_id=row.agreement_id,
            line_id=row.line_id,
            identification=row.identification,
            status=row.status,
            instances=row.instances,
            created_at=row.created_at,
            revoked_at=row.revoked_at,
            blocked_reason=row.blocked_reason,
        )
