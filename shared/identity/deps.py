"""The caller of a request: `CurrentUser` gives every route the user, institution and roles."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared import audit
from shared.entitlements.model import InstitutionKind
from shared.i18n import negotiate
from shared.identity.models import Role, User
from shared.platform import Platform
from shared.problems import Forbidden, InvalidToken, Unauthorized
from shared.registry.models import Institution

oauth2 = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)


@dataclass(frozen=True, slots=True)
class Caller:
    user_id: int
    username: str
    display_name: str
    institution_id: int
    roles: frozenset[Role]
    languages: tuple[str, ...]
    specialties: tuple[str, ...]
    lang: str
    operator: bool = False
    """True for users of the platform's operator: their admin and auditor roles reach every institution."""

    def has(self, *roles: Role) -> bool:
        return any(role in self.roles for role in roles)

    @property
    def actor(self) -> audit.Actor:
        return audit.Actor(self.user_id, self.username, self.institution_id)


def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


async def _platform(request: Request) -> Platform:
    """`get_platform` as a dependency. Async, as every dependency here: FastAPI runs a plain
    `def` one in a worker thread, a thread hop on every request for an attribute read."""
    return get_platform(request)


PlatformDep = Annotated[Platform, Depends(_platform)]


async def get_session(platform: PlatformDep) -> AsyncIterator[AsyncSession]:
    """The request's one transaction, committed before the response is sent."""
    async with platform.database.transaction() as session:
        yield session


Session = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_caller(
    request: Request, platform: PlatformDep, token: Annotated[str | None, Depends(oauth2)]
) -> Caller:
    """Who is calling, looked up in a short transaction of its own.

    The request's own transaction then begins only when the route first
    touches the database, so a route may commit something separately first
    (an idempotency key) without waiting on its own transaction's lock.
    """
    if not token:
        raise Unauthorized("send an access token: Authorization: Bearer <token>")
    async with platform.database.transaction() as session:
        try:
            user, institution = await _user_for(token, platform, session)
        except InvalidToken as exc:
            exc.refusal = audit.Refusal(
                audit.Actor(),
                "auth.token_rejected",
                rule="invalid_token",
                reasons=[exc.detail or ""],
                details={"path": request.url.path},
            )
            raise
    return Caller(
        operator=institution is not None and institution.kind == InstitutionKind.OPERATOR,
        user_id=user.id,
        username=user.username,
        display_name=user.display_name,
        institution_id=user.institution_id,
        roles=frozenset(Role(r) for r in user.roles if r in Role.__members__.values()),
        languages=tuple(user.languages),
        specialties=tuple(user.specialties),
        lang=negotiate(request.headers.get("accept-language"), tuple(user.languages)),
    )


_USER_AND_INSTITUTION = select(User, Institution).outerjoin(
    Institution, Institution.id == User.institution_id
)


async def _user_for(
    token: str, platform: Platform, session: AsyncSession
) -> tuple[User, Institution | None]:
    """The token's user and its institution, in one query."""
    settings = platform.settings
    if platform.oidc is not None:
        claims = await platform.oidc.verify(token)
        if not claims.username:
            raise InvalidToken(f"the token has no {settings.oidc_username_claim} claim")
        which = User.username == claims.username
    else:
        claims = platform.keyring.verify(
            token, issuer=settings.jwt_issuer, audience=settings.jwt_audience
        )
        if not claims.subject.isdigit():
            raise InvalidToken("the token's user is unknown here")
        which = User.id == int(claims.subject)
    row = (await session.execute(_USER_AND_INSTITUTION.where(which))).first()
    if row is None:
        raise InvalidToken("the token's user is unknown here")
    user, institution = row
    if user.disabled:
        raise InvalidToken("the user is disabled")
    return user, institution


CurrentUser = Annotated[Caller, Depends(get_caller)]


def require(caller: Caller, *roles: Role, action: str, rule: str = "role_required") -> None:
    """Refuse (and audit the refusal) unless the caller holds one of `roles`."""
    if not caller.has(*roles):
        names = ", ".join(sorted(r.value for r in roles))
        raise Forbidden(
            f"this action needs one of the roles: {names}",
            rule=rule,
            refusal=audit.Refusal(caller.actor, action, rule=rule),
        )
