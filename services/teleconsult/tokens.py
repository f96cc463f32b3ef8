"""Join tokens: a short-lived, signed pass into one teleconsult room.

`POST /api/teleconsults/{id}/join` issues one after checking the caller, the
session and `decide()`; the signalling socket accepts nothing else. The token
is a JWT signed by the platform's keyring with its own audience, so an access
token is never a join token, and it names the session, so a pass to one room
does not open another. It carries what the room shows of the peer (name,
institution) so signalling needs no database on the hot path.

A join token is single use: it opens the signalling socket once. The socket
spends its `jti` (every token `Keyring.issue` signs has one) when it accepts
it, and refuses it afterwards as it refuses an expired one
(`signalling.spent`), so a token that leaked (a log, a shared screen, a proxy)
does not let a second party in as the same peer. A client that reconnects asks
the join route again for a fresh token.

A patient has no account: with the join token it gets a *session pass*, the
same grant under another audience (`purpose="pass"`), valid until the join
window closes, which it sends as its bearer token to join again after a drop
(a fresh join token each time), post quality samples and answer the recording
consent. The pass is reusable until the window closes and never opens the
socket itself. A pass is never a join token and a join token is never a pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.identity.tokens import Keyring
from shared.problems import InvalidToken
from shared.settings import Settings

AUDIENCE_SUFFIX = ":teleconsult-join"
PASS_SUFFIX = ":teleconsult-pass"  # noqa: S105 - an audience suffix, not a secret


class RoomRole(StrEnum):
    HOST = "host"
    """Admits others from the waiting room and may end the session."""
    PARTICIPANT = "participant"
    RECORDER = "recorder"
    """The server-side aiortc peer that records with everyone's consent."""


@dataclass(frozen=True, slots=True)
class JoinGrant:
    session_id: int
    peer: str
    """Stable participant key: `user:<id>`, `guest:<invitation id>` or `recorder`."""
    name: str
    institution: str
    role: RoomRole
    kind: str
    """What the peer is in the session: referring, specialist, interpreter, patient, recorder."""
    lang: str
    expires_at: int = 0
    jti: str = ""
    """The token's own id (`Keyring.issue` gives every token one): what the socket spends."""


def _audience(settings: Settings, purpose: str = "join") -> str:
    return settings.jwt_audience + (PASS_SUFFIX if purpose == "pass" else AUDIENCE_SUFFIX)


def issue(
    keyring: Keyring, settings: Settings, grant: JoinGrant, *, ttl_s: int, purpose: str = "join"
) -> tuple[str, int]:
    """Sign `grant` for `ttl_s` seconds; returns the token and its lifetime."""
    return keyring.issue(
        subject=grant.peer,
        username=grant.name,
        issuer=settings.jwt_issuer,
        audience=_audience(settings, purpose),
        ttl_s=ttl_s,
        extra={
            "sid": grant.session_id,
            "inst": grant.institution,
            "role": grant.role.value,
            "kind": grant.kind,
            "lang": grant.lang,
        },
    )


def verify(
    keyring: Keyring, settings: Settings, token: str, *, session_id: int, purpose: str = "join"
) -> JoinGrant:
    """The grant in `token`, or `InvalidToken` if it is forged, expired or for another room."""
    audience = _audience(settings, purpose)
    claims = keyring.verify(token, issuer=settings.jwt_issuer, audience=audience).raw
    if claims.get("sid") != session_id:
        raise InvalidToken("the join token is for another teleconsultation")
    try:
        role = RoomRole(claims["role"])
        return JoinGrant(
            session_id=session_id,
            peer=str(claims["sub"]),
            name=str(claims.get("preferred_username") or ""),
            institution=str(claims.get("inst") or ""),
            role=role,
            kind=str(claims.get("kind") or ""),
            lang=str(claims.get("lang") or "en"),
            expires_at=int(claims["exp"]),
            jti=str(claims["jti"]),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise InvalidToken("the join token is incomplete") from exc
