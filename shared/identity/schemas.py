"""Bodies of the identity API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.entitlements import vocab
from shared.i18n import LANGUAGES
from shared.identity.models import Role


def _check_languages(value: list[str] | None) -> list[str] | None:
    unknown = [lang for lang in value or () if lang not in LANGUAGES]
    if unknown:
        raise ValueError(f"unsupported languages {unknown}; use {list(LANGUAGES)}")
    return value


class TokenRead(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{1,119}$")
    password: str | None = Field(
        default=None,
        min_length=10,
        max_length=200,
        description="None for users who sign in through OIDC only",
    )
    display_name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    institution_id: int = Field(gt=0)
    roles: list[Role] = Field(min_length=1, max_length=6)
    languages: list[str] = Field(default_factory=lambda: ["en"], max_length=3)
    specialties: list[str] = Field(default_factory=list, max_length=20)

    _languages = field_validator("languages")(_check_languages)

    @field_validator("specialties")
    @classmethod
    def _specialties(cls, value: list[str]) -> list[str]:
        unknown = [code for code in value if not vocab.is_specialty(code)]
        if unknown:
            raise ValueError(f"unknown specialties {unknown}")
        return value


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    display_name: str | None = Field(default=None, min_length=1, max_length=200)
    password: str | None = Field(default=None, min_length=10, max_length=200)
    roles: list[Role] | None = Field(default=None, min_length=1, max_length=6)
    languages: list[str] | None = Field(default=None, max_length=3)
    disabled: bool | None = None

    _languages = field_validator("languages")(_check_languages)


class UserRead(BaseModel):
    id: int
    username: str
    display_name: str
    email: str | None
    institution_id: int
    roles: list[Role]
    languages: list[str]
    specialties: list[str]
    disabled: bool
    created_at: datetime
