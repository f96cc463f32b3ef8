"""A referral accepted across a border, ready for teleconsults, on SQLite and PostgreSQL.

Ouargla (Africa/Algiers) refers to AP-HP (Europe/Paris) under a cooperation
whose lines cover second opinions and teleconsultations (quota 2 a term);
Tinghir (Africa/Casablanca) is a stranger to both. `Clinic.schedule()` creates a
session through the API; the signalling and media tests may build on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.teleconsult.sessions.models import Teleconsult
from shared.audit import AuditEvent
from shared.db import utcnow
from shared.identity.models import Role, User
from shared.platform import Platform
from shared.registry.models import Agreement, Institution, UsageEntry
from shared.settings import Settings
from tests.conftest import make_settings
from tests.factories import Factory

SPECIALTY = "paediatric_surgery"
TELECONSULT_QUOTA = 2
STUN = "stun:127.0.0.1:3478"
TURN = "turn:127.0.0.1:3478?transport=udp"


@pytest.fixture
def settings(tmp_path: Path, signing_key: Path, database_url: str) -> Settings:
    return make_settings(
        tmp_path,
        signing_key,
        database_url,
        stun_urls=[STUN],
        turn_urls=[TURN],
        turn_secret="test-turn-secret",
    )


@dataclass
class Clinic:
    factory: Factory
    client: httpx.AsyncClient
    platform: Platform
    ouargla: Institution
    aphp: Institution
    tinghir: Institution
    agreement: Agreement
    referrer: User
    origin_coordinator: User
    interpreter: User
    specialist: User
    provider_radiologist: User
    stranger: User
    referral_id: int
    created: list[dict[str, Any]] = field(default_factory=list)

    def h(self, user: User, lang: str | None = None) -> dict[str, str]:
        return self.factory.headers(user, lang)

    async def schedule(
        self,
        user: User | None = None,
        *,
        starts_in: timedelta = timedelta(minutes=5),
        **overrides: Any,
    ) -> httpx.Response:
        """POST /api/teleconsults: the referrer hosts, the specialist is invited."""
        body: dict[str, Any] = {
            "referral_id": self.referral_id,
            "starts_at": (utcnow() + starts_in).isoformat(),
            "duration_minutes": 30,
            "participants": [self.specialist.id],
        }
        body.update(overrides)
        return await self.client.post(
            "/api/teleconsults", json=body, headers=self.h(user or self.referrer)
        )

    async def scheduled(self, **overrides: Any) -> dict[str, Any]:
        response = await self.schedule(**overrides)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def post(
        self,
        user: User | None,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """POST as `user` (None: no access token, or only the given `headers`)."""
        auth = self.h(user) if user is not None else {}
        return await self.client.post(path, json=body, headers={**auth, **(headers or {})})

    async def get(self, user: User, path: str) -> httpx.Response:
        return await self.client.get(path, headers=self.h(user))

    async def join(self, user: User, session_id: int) -> httpx.Response:
        return await self.post(user, f"/api/teleconsults/{session_id}/join")

    async def audit(self, action: str) -> list[AuditEvent]:
        async with self.platform.database.transaction() as session:
            return list(
                await session.scalars(
                    select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
                )
            )

    async def refusals(self, action: str) -> list[str | None]:
        return [e.rule for e in await self.audit(action) if e.outcome == "refused"]

    async def usage(self, session_id: int) -> list[str]:
        async with self.platform.database.transaction() as session:
            rows = await session.scalars(
                select(UsageEntry.state).where(
                    UsageEntry.resource_type == "teleconsult",
                    UsageEntry.resource_id == str(session_id),
                )
            )
            return list(rows)

    async def move_slot(self, session_id: int, starts_at: datetime, minutes: int = 30) -> None:
        """Put a session's slot elsewhere in time (as if it had been scheduled then)."""
        async with self.platform.database.transaction() as session:
            row = await session.get(Teleconsult, session_id)
            assert row is not None
            row.starts_at, row.ends_at = starts_at, starts_at + timedelta(minutes=minutes)

    async def set_agreement_status(self, status: str) -> None:
        async with self.platform.database.transaction() as session:
            row = await session.get(Agreement, self.agreement.id)
            assert row is not None
            row.status = status


async def make_clinic(factory: Factory, client: httpx.AsyncClient, platform: Platform) -> Clinic:
    f = factory
    ouargla = await f.institution("DZ-OUARGLA-EPH-TC")
    aphp = await f.institution("FR-PARIS-APHP-TC", country="FR", timezone="Europe/Paris")
    tinghir = await f.institution("MA-TINGHIR-TC", country="MA", timezone="Africa/Casablanca")
    agreement = await f.agreement(
        ouargla,
        aphp,
        kind="cooperation",
        valid_from=date(2024, 1, 1),
        lines=[
            {"service": "second_opinion", "specialties": [SPECIALTY]},
            {
                "service": "teleconsultation",
                "specialties": [SPECIALTY],
                "quota": TELECONSULT_QUOTA,
                "period": "term",
            },
        ],
    )
    referrer = await f.user(ouargla, Role.REFERRING_PHYSICIAN, languages=("fr", "ar"))
    specialist = await f.user(aphp, Role.SPECIALIST, languages=("fr", "en"))
    submitted = await client.post(
        "/api/referrals",
        json={
            "patient": {
                "local_id": "OUA-TC-1",
                "name": "Yacine Benali",
                "sex": "M",
                "birth_date": "2019-04-12",
            },
            "question": "Hypospadias repair: surgical indication and timing?",
            "summary": "Boy of 7, distal hypospadias.",
            "specialty": SPECIALTY,
            "urgency": "routine",
            "service": "second_opinion",
            "languages": ["fr"],
        },
        headers=f.headers(referrer),
    )
    assert submitted.status_code == 201, submitted.text
    referral_id: int = submitted.json()["id"]
    accepted = await client.post(
        f"/api/referrals/{referral_id}/accept", headers=f.headers(specialist)
    )
    assert accepted.status_code == 200, accepted.text
    return Clinic(
        factory=f,
        client=client,
        platform=platform,
        ouargla=ouargla,
        aphp=aphp,
        tinghir=tinghir,
        agreement=agreement,
        referrer=referrer,
        origin_coordinator=await f.user(ouargla, Role.COORDINATOR),
        interpreter=await f.user(ouargla, Role.REFERRING_PHYSICIAN, languages=("ar", "fr")),
        specialist=specialist,
        provider_radiologist=await f.user(aphp, Role.RADIOLOGIST),
        stranger=await f.user(tinghir, Role.SPECIALIST, Role.REFERRING_PHYSICIAN),
        referral_id=referral_id,
    )


@pytest.fixture
async def clinic(factory: Factory, client: httpx.AsyncClient, platform: Platform) -> Clinic:
    return await make_clinic(factory, client, platform)
