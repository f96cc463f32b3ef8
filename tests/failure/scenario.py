"""Two partner hospitals, an agreement with no quota, and the people who act on it, on any database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from shared.identity.models import Role, User
from shared.platform import Platform
from shared.registry.models import Institution
from tests.conftest import make_settings
from tests.factories import Factory

SPECIALTY = "paediatric_surgery"


@dataclass
class Partners:
    platform: Platform
    factory: Factory
    origin: Institution
    provider: Institution
    referrer: User
    specialist: User
    stranger: User
    """A referring physician of a third hospital, with no agreement: sees none of it."""

    def headers(self, user: User, **extra: str) -> dict[str, str]:
        return {**self.factory.headers(user), **extra}


async def partners(
    data_dir: Path, signing_key: Path, database_url: str, *, quota: int | None = None
) -> Partners:
    platform = Platform.from_settings(make_settings(data_dir, signing_key, database_url))
    f = Factory(platform)
    origin, provider, third = await f.institution(), await f.institution(), await f.institution()
    await f.agreement(
        origin,
        provider,
        valid_from=date(2020, 1, 1),
        lines=[{"service": "second_opinion", "specialties": [SPECIALTY], "quota": quota}],
    )
    return Partners(
        platform,
        f,
        origin,
        provider,
        await f.user(origin, Role.REFERRING_PHYSICIAN),
        await f.user(provider, Role.SPECIALIST),
        await f.user(third, Role.REFERRING_PHYSICIAN),
    )


def referral(n: int | str) -> dict[str, Any]:
    """The body of submission `n`: its own patient and question."""
    return {
        "patient": {
            "local_id": f"OUA-{n}",
            "name": "Jane Doe",
            "sex": "F",
            "birth_date": "1980-02-03",
        },
        "question": f"Second opinion on case {n}?",
        "summary": "Abdominal mass in a six-year-old.",
        "specialty": SPECIALTY,
        "urgency": "routine",
        "service": "second_opinion",
        "languages": ["fr"],
    }


def app_env(data_dir: Path, signing_key: Path, database_url: str) -> dict[str, str]:
    """Settings of the app process: the test's database and signing key, no demo data."""
    return {
        "JISR_ENVIRONMENT": "test",
        "JISR_DATABASE_URL": database_url,
        "JISR_SIGNING_KEY_PATH": str(signing_key),
        "JISR_DATA_DIR": str(data_dir),
        "JISR_SEED_DEMO": "false",
        "JISR_LOG_JSON": "false",
        "JISR_LOG_LEVEL": "WARNING",
    }
