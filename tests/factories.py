"""Test data built through the ORM, committed, with tokens issued by the platform's own key."""

from __future__ import annotations

import itertools
from datetime import date
from functools import cache
from typing import Any

from shared.entitlements.model import InstitutionKind
from shared.identity import passwords
from shared.identity.models import Role, User
from shared.platform import Platform
from shared.registry.models import Agreement, AgreementParty, CoverageLine, Institution

PASSWORD = "correct-horse-battery"
_counter = itertools.count(1)


@cache
def password_hash() -> str:
    return passwords.hash_password(PASSWORD)


class Factory:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    async def institution(
        self,
        code: str | None = None,
        *,
        country: str = "DZ",
        timezone: str = "Africa/Algiers",
        kind: InstitutionKind = InstitutionKind.GENERAL_HOSPITAL,
    ) -> Institution:
        n = next(_counter)
        row = Institution(
            code=code or f"XX-INST-{n}",
            name_ar=f"مؤسسة {n}",
            name_fr=f"Établissement {n}",
            name_en=f"Institution {n}",
            country=country,
            city="City",
            kind=kind.value,
            timezone=timezone,
        )
        async with self.platform.database.transaction() as session:
            session.add(row)
        return row

    async def operator(self) -> Institution:
        return await self.institution(f"OPERATOR-{next(_counter)}", kind=InstitutionKind.OPERATOR)

    async def user(
        self,
        institution: Institution,
        *roles: Role,
        username: str | None = None,
        languages: tuple[str, ...] = ("en",),
        disabled: bool = False,
    ) -> User:
        row = User(
            username=username or f"user{next(_counter)}",
            password_hash=password_hash(),
            display_name="Test user",
            institution_id=institution.id,
            roles=[r.value for r in roles],
            languages=list(languages),
            specialties=[],
            disabled=disabled,
        )
        async with self.platform.database.transaction() as session:
            session.add(row)
        return row

    def token(self, user: User, **overrides: Any) -> str:
        settings = self.platform.settings
        token, _ = self.platform.keyring.issue(
            subject=str(user.id),
            username=user.username,
            issuer=overrides.pop("issuer", settings.jwt_issuer),
            audience=overrides.pop("audience", settings.jwt_audience),
            ttl_s=overrides.pop("ttl_s", 600),
            extra=overrides,
        )
        return token

    def headers(self, user: User, lang: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token(user)}"}
        if lang:
            headers["Accept-Language"] = lang
        return headers

    async def agreement(
        self,
        requester: Institution,
        provider: Institution,
        *,
        code: str | None = None,
        status: str = "active",
        valid_from: date = date(2024, 1, 1),
        valid_until: date | None = None,
        lines: list[dict[str, Any]] | None = None,
        renews: Agreement | None = None,
        timezone: str | None = None,
        kind: str = "twinning",
    ) -> Agreement:
        lines = lines if lines is not None else [{"service": "second_opinion"}]
        row = Agreement(
            code=code or f"AG-T-{next(_counter)}",
            title="Test agreement",
            kind=kind,
            status=status,
            valid_from=valid_from,
            valid_until=valid_until,
            timezone=timezone or provider.timezone,
            renews_id=renews.id if renews else None,
            parties=[
                AgreementParty(institution_id=requester.id, role="requester"),
                AgreementParty(institution_id=provider.id, role="provider"),
            ],
            lines=[
                CoverageLine(
                    service=line["service"],
                    specialties=line.get("specialties", []),
                    requesters=line.get("requesters", []),
                    providers=line.get("providers", []),
                    quota=line.get("quota"),
                    period=line.get("period", "term"),
                    response_hours=line.get(
                        "response_hours", {"routine": 120, "urgent": 48, "emergency": 6}
                    ),
                    identification=line.get("identification", "pseudonymised"),
                    consent_required=line.get("consent_required", True),
                    imaging=line.get("imaging"),
                    active=True,
                )
                for line in lines
            ],
        )
        async with self.platform.database.transaction() as session:
            session.add(row)
        return row
