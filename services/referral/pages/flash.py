"""One-shot messages carried across a redirect (post, redirect, get) in a short-lived cookie.

The cookie holds a catalogue key and its parameters, never text: the next page
words it in its own language, and only `flash.*` keys are shown.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from services.referral.pages.render import Labels
from shared import web_session as auth

COOKIE = "jisr_flash"
MAX_AGE_S = 120


def put(response: Response, request: Request, key: str, **params: str | int) -> None:
    payload = json.dumps({"k": key, "p": params}, ensure_ascii=False).encode()
    response.set_cookie(
        COOKIE,
        base64.urlsafe_b64encode(payload).decode(),
        max_age=MAX_AGE_S,
        path="/",
        httponly=True,
        samesite="strict",
        secure=auth.secure(request),
    )


def take(request: Request, labels: Labels) -> list[tuple[str, str]]:
    """The message left by the previous response, as (kind, words); the caller drops the cookie."""
    raw = request.cookies.get(COOKIE)
    if not raw:
        return []
    try:
        data: Any = json.loads(base64.urlsafe_b64decode(raw.encode()))
    except (ValueError, binascii.Error):
        return []
    if not isinstance(data, dict):
        return []
    key, params = data.get("k"), data.get("p")
    if not isinstance(key, str) or not key.startswith("flash.") or not isinstance(params, dict):
        return []
    safe = {str(k): v for k, v in params.items() if isinstance(v, str | int)}
    return [("ok", labels.t(key, **safe))]


def drop(response: Response, request: Request) -> None:
    if request.cookies.get(COOKIE):
        response.delete_cookie(
            COOKIE, path="/", httponly=True, samesite="strict", secure=auth.secure(request)
        )
