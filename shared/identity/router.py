"""Sign-in, published keys, and user administration."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, status
from fastapi.security import OAuth2PasswordRequestForm

from shared.identity import service
from shared.identity.deps import CurrentUser, PlatformDep, Session
from shared.identity.models import User
from shared.identity.schemas import TokenRead, UserCreate, UserRead, UserUpdate
from shared.pagination import Page, Paging
from shared.problems import BadRequest

router = APIRouter(tags=["identity"])


def user_read(user: User) -> UserRead:
    return UserRead.model_validate(user, from_attributes=True)


@router.post("/auth/token", response_model=TokenRead)
async def token(
    session: Session, platform: PlatformDep, form: Annotated[OAuth2PasswordRequestForm, Depends()]
) -> TokenRead:
    """OAuth2 password flow: trade a username and password for a signed access token."""
    if platform.oidc is not None:
        raise BadRequest(f"sign in through the identity provider {platform.oidc.issuer}")
    access_token, ttl = await service.sign_in(
        session, platform, username=form.username, password=form.password
    )
    return TokenRead(access_token=access_token, expires_in=ttl)


@router.get("/.well-known/jwks.json")
async def jwks(platform: PlatformDep) -> dict[str, Any]:
    """The public keys that verify this platform's access tokens (RFC 7517)."""
    return platform.keyring.jwks()


@router.get("/api/users/me", response_model=UserRead)
async def me(session: Session, caller: CurrentUser) -> UserRead:
    """The signed-in user."""
    return user_read(await service.get_user(session, caller, user_id=caller.user_id))


@router.get("/api/users", response_model=Page[UserRead])
async def list_users(
    session: Session,
    caller: CurrentUser,
    paging: Paging,
    institution: Annotated[int | None, Query(gt=0)] = None,
) -> Page[UserRead]:
    """Users an admin manages: their institution's (everyone's for the operator)."""
    rows, pagination = await service.list_users(
        session, caller, paging=paging, institution_id=institution
    )
    return Page(items=[user_read(u) for u in rows], pagination=pagination)


@router.post("/api/users", response_model=UserRead, status_code=status.HTTP_201_CREATED)
async def create_user(session: Session, caller: CurrentUser, data: UserCreate) -> UserRead:
    """Create a user in an institution, with roles, languages and specialties."""
    return user_read(await service.create_user(session, caller, data=data))


@router.get("/api/users/{user_id}", response_model=UserRead)
async def get_user(session: Session, caller: CurrentUser, user_id: int) -> UserRead:
    """One user (yourself, or a user you administer)."""
    return user_read(await service.get_user(session, caller, user_id=user_id))


@router.patch("/api/users/{user_id}", response_model=UserRead)
async def update_user(
    session: Session, caller: CurrentUser, user_id: int, data: UserUpdate
) -> UserRead:
    """Change a user's name, password, roles or languages, or disable them."""
    return user_read(await service.update_user(session, caller, user_id=user_id, data=data))
