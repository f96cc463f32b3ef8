"""`AttendeeDep`: a user's access token, or a patient's session pass for this very session."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.teleconsult import tokens
from services.teleconsult.sessions.access import Attendee
from shared.identity.deps import PlatformDep, get_caller, oauth2
from shared.problems import InvalidToken


async def get_attendee(
    request: Request,
    session_id: int,
    platform: PlatformDep,
    token: Annotated[str | None, Depends(oauth2)],
) -> Attendee:
    """A session pass of a guest of `session_id` first; otherwise the usual access token."""
    if token:
        try:
            grant = tokens.verify(
                platform.keyring, platform.settings, token, session_id=session_id, purpose="pass"
            )
        except InvalidToken:
            pass
        else:
            kind, _, number = grant.peer.partition(":")
            if kind == "guest" and number.isdigit():
                return Attendee(
                    guest_participant_id=int(number),
                    guest_session_id=session_id,
                    guest_lang=grant.lang,
                )
    return Attendee(caller=await get_caller(request, platform, token))


AttendeeDep = Annotated[Attendee, Depends(get_attendee)]
