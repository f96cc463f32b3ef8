"""Response bodies of the notifications API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.pagination import Page

EmailState = Literal["none", "pending", "sent", "failed"]


class NotificationRead(BaseModel):
    """A notification as its recipient reads it, already in their language."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str = Field(description="what happened, e.g. referral_accepted")
    resource_type: str | None = Field(description="the kind of thing it is about, e.g. referral")
    resource_id: str | None
    lang: str = Field(description="the language of title and body (BCP 47)")
    title: str
    body: str
    params: dict[str, Any] = Field(description="the codes the text was written from")
    created_at: datetime
    read_at: datetime | None = Field(description="when the recipient marked it read; null: unread")
    email_state: EmailState = Field(
        description="none (no e-mail), pending, sent or failed (retries used up or refused)"
    )
    emailed_at: datetime | None


class NotificationPage(Page[NotificationRead]):
    unread_count: int = Field(description="the caller's unread notifications, whatever the filter")


class NotificationsMarked(BaseModel):
    marked: int = Field(description="how many notifications this request marked read")
    unread_count: int
