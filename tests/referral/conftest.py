"""A small world of partnerships for referral tests, on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.identity.models import Role, User
from shared.registry.models import Institution
from shared.settings import Settings
from tests.conftest import make_settings
from tests.factories import Factory


@pytest.fixture
def settings(tmp_path: Path, signing_key: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, signing_key, database_url)


@dataclass
class World:
    """Ouargla refers; Sétif (domestic twinning) and AP-HP (foreign) provide; Tinghir is a stranger."""

    factory: Factory
    client: httpx.AsyncClient
    ouargla: Institution
    setif: Institution
    aphp: Institution
    tinghir: Institution
    referrer: User
    origin_coordinator: User
    setif_specialist: User
    setif_coordinator: User
    aphp_specialist: User
    aphp_coordinator: User
    stranger: User

    def h(self, user: User, lang: str | None = None) -> dict[str, str]:
        return self.factory.headers(user, lang)

    async def submit(self, user: User | None = None, **overrides: Any) -> httpx.Response:
        body: dict[str, Any] = {
            "patient": {
                "local_id": "OUA-2026-0042",
                "name": "Yacine Benali",
                "sex": "M",
                "birth_date": "2019-04-12",
            },
            "question": "Hypospadias repair: surgical indication and timing?",
            "summary": "Boy of 7, distal hypospadias, no urinary symptoms.",
            "specialty": "paediatric_surgery",
            "urgency": "routine",
            "service": "second_opinion",
            "languages": ["fr"],
        }
        body.update(overrides)
        return await self.client.post(
            "/api/referrals", json=body, headers=self.h(user or self.referrer)
        )

    async def act(
        self,
        user: User,
        referral_id: int,
        action: str,
        body: dict[str, Any] | None = None,
        lang: str | None = None,
    ) -> httpx.Response:
        return await self.client.post(
            f"/api/referrals/{referral_id}/{action}", json=body, headers=self.h(user, lang)
        )


@pytest.fixture
async def world(factory: Factory, client: httpx.AsyncClient) -> World:
    f = factory
    ouargla = await f.institution("DZ-OUARGLA-EPH")
    setif = await f.institution("DZ-SETIF-CHU")
    aphp = await f.institution("FR-PARIS-APHP", country="FR", timezone="Europe/Paris")
    tinghir = await f.institution("MA-TINGHIR-CHP", country="MA", timezone="Africa/Casablanca")
    line = {
        "service": "second_opinion",
        "specialties": ["paediatric_surgery"],
        "quota": 10,
        "period": "quarter",
        "response_hours": {"routine": 72, "urgent": 24, "emergency": 4},
    }
    await f.agreement(
        ouargla,
        setif,
        code="AG-TW-OUA-SET",
        kind="twinning",
        valid_from=date(2017, 1, 1),
        lines=[line],
    )
    await f.agreement(
        ouargla,
        aphp,
        code="AG-CO-OUA-APHP",
        kind="cooperation",
        valid_from=date(2024, 1, 1),
        lines=[{**line, "identification": "anonymised"}],
    )
    return World(
        factory=f,
        client=client,
        ouargla=ouargla,
        setif=setif,
        aphp=aphp,
        tinghir=tinghir,
        referrer=await f.user(ouargla, Role.REFERRING_PHYSICIAN, languages=("fr", "ar")),
        origin_coordinator=await f.user(ouargla, Role.COORDINATOR),
        setif_specialist=await f.user(setif, Role.SPECIALIST, languages=("fr",)),
        setif_coordinator=await f.user(setif, Role.COORDINATOR),
        aphp_specialist=await f.user(aphp, Role.SPECIALIST, languages=("fr", "en")),
        aphp_coordinator=await f.user(aphp, Role.COORDINATOR),
        stranger=await f.user(tinghir, Role.SPECIALIST, Role.COORDINATOR, Role.AUDITOR),
    )
