"""Users and sign-in.

argon2 is slow by design (about a quarter of a second here): hashing and checking run
in a thread, so one sign-in does not stall every other request of the service.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared import audit
from shared.identity import passwords
from shared.identity.deps import Caller
from shared.identity.models import Role, User
from shared.identity.schemas import UserCreate, UserUpdate
from shared.pagination import PageParams, Pagination, paginate
from shared.platform import Platform
from shared.problems import Conflict, Forbidden, InvalidCredentials, NotFound, Unprocessable
from shared.registry.models import Institution


async def sign_in(
    session: AsyncSession, platform: Platform, *, username: str, password: str
) -> tuple[str, int]:
    """Check a password and issue an access token; failures are audited without saying why."""
    user = await session.scalar(select(User).where(User.username == username))
    ok = await asyncio.to_thread(
        passwords.verify_password, user.password_hash if user else None, password
    )
    if user is None or not ok or user.disabled:
        raise InvalidCredentials(
            refusal=audit.Refusal(
                audit.Actor(username=username[:120]), "auth.sign_in", rule="invalid_credentials"
            ),
        )
    settings = platform.settings
    await audit.record(
        session, audit.Actor(user.id, user.username, user.institution_id), "auth.sign_in"
    )
    return platform.keyring.issue(
        subject=str(user.id),
        username=user.username,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_s=settings.access_token_ttl_s,
    )


def _may_manage_users(caller: Caller, institution_id: int) -> bool:
    """Admins manage their own institution's users; the operator's admins manage everyone."""
    return caller.has(Role.ADMIN) and (caller.operator or caller.institution_id == institution_id)


def _refuse(caller: Caller, action: str) -> Forbidden:
    rule = "user_admin_required"
    return Forbidden(
        "only an admin of the user's institution may do this",
        rule=rule,
        refusal=audit.Refusal(caller.actor, action, rule=rule, resource_type="user"),
    )


async def create_user(session: AsyncSession, caller: Caller, *, data: UserCreate) -> User:
    if not _may_manage_users(caller, data.institution_id):
        raise _refuse(caller, "user.create")
    if await session.get(Institution, data.institution_id) is None:
        raise Unprocessable(f"unknown institution {data.institution_id}")
    if await session.scalar(select(User.id).where(User.username == data.username)) is not None:
        raise Conflict(f"the username {data.username} is taken")
    user = User(
        username=data.username,
        password_hash=(
            await asyncio.to_thread(passwords.hash_password, data.password)
            if data.password
            else None
        ),
        display_name=data.display_name,
        email=data.email,
        institution_id=data.institution_id,
        roles=[r.value for r in data.roles],
        languages=data.languages,
        specialties=data.specialties,
        disabled=False,
    )
    session.add(user)
    await session.flush()
    await audit.record(
        session,
        caller.actor,
        "user.create",
        resource_type="user",
        resource_id=user.id,
        details={"username": user.username, "roles": user.roles},
    )
    return user


async def list_users(
    session: AsyncSession, caller: Caller, *, paging: PageParams, institution_id: int | None
) -> tuple[list[User], Pagination]:
    if not caller.has(Role.ADMIN):
        raise _refuse(caller, "user.list")
    query = select(User).order_by(User.username)
    if not caller.operator:
        query = query.where(User.institution_id == caller.institution_id)
    if institution_id is not None:
        query = query.where(User.institution_id == institution_id)
    return await paginate(session, query, paging)


async def get_user(session: AsyncSession, caller: Caller, *, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None or not (
        user.id == caller.user_id or _may_manage_users(caller, user.institution_id)
    ):
        raise NotFound(f"no user {user_id}")
    return user


async def update_user(
    session: AsyncSession, caller: Caller, *, user_id: int, data: UserUpdate
) -> User:
    user = await get_user(session, caller, user_id=user_id)
    if not _may_manage_users(caller, user.institution_id):
        raise _refuse(caller, "user.update")
    if user.id == caller.user_id and (
        data.disabled or (data.roles is not None and Role.ADMIN not in data.roles)
    ):
        raise Conflict("admins cannot disable themselves or drop their own admin role")
    changed = data.model_dump(exclude_unset=True, exclude={"password"})
    for field, value in changed.items():
        setattr(
            user,
            field,
            [v.value if isinstance(v, Role) else v for v in value]
            if isinstance(value, list)
            else value,
        )
    if data.password:
        user.password_hash = await asyncio.to_thread(passwords.hash_password, data.password)
        changed["password"] = "changed"  # noqa: S105 - the audit says it changed, never what to
    await session.flush()
    await audit.record(
        session,
        caller.actor,
        "user.update",
        resource_type="user",
        resource_id=user.id,
        details={k: v for k, v in changed.items()},
    )
    return user


async def ensure_admin(session: AsyncSession, *, institution_id: int, password: str) -> User | None:
    """Create the first `admin` at the operator institution, once; None if it exists."""
    if await session.scalar(select(User.id).where(User.username == "admin")) is not None:
        return None
    user = User(
        username="admin",
        password_hash=await asyncio.to_thread(passwords.hash_password, password),
        display_name="Platform administrator",
        institution_id=institution_id,
        roles=[Role.ADMIN.value, Role.AUDITOR.value],
        languages=["en", "fr", "ar"],
        specialties=[],
        disabled=False,
    )
    session.add(user)
    await session.flush()
    await audit.record(
        session,
        audit.SYSTEM,
        "user.create",
        resource_type="user",
        resource_id=user.id,
        details={"username": "admin", "bootstrap": True},
    )
    return user
