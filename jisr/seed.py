"""First-start data: the operator and `admin` always; the demo partnerships when asked.

The demo (`demo.json`) models the partnerships of ../shared/DESIGN.md: Oran and
AP-HP (2016, renewed 2024), Kuwait's five Paris memoranda, the Moroccan cancer
centres with Centre Léon Bérard, Algeria's north-south twinnings and Tinghir.
Each institution gets one demo user per role, named `<slug>.<role>`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared import audit
from shared.entitlements.model import InstitutionKind
from shared.identity import passwords
from shared.identity import service as identity
from shared.identity.models import Role, User
from shared.registry.models import Agreement, AgreementParty, CoverageLine, Institution
from shared.settings import Settings

DEMO_FILE = Path(__file__).with_name("demo.json")
DEMO_PASSWORD = "jisr-demo"  # noqa: S105 - printed at start; demo data only
ROLE_NAMES = {
    Role.REFERRING_PHYSICIAN: "referrer",
    Role.SPECIALIST: "specialist",
    Role.RADIOLOGIST: "radiologist",
    Role.COORDINATOR: "coordinator",
    Role.ADMIN: "admin",
    Role.AUDITOR: "auditor",
}
LANGUAGES_BY_COUNTRY = {
    "DZ": ["fr", "ar"],
    "MA": ["fr", "ar"],
    "KW": ["ar", "en"],
    "FR": ["fr", "en"],
}
DEFAULT_SPECIALTIES = {Role.SPECIALIST: ["nephrology"], Role.RADIOLOGIST: ["radiology"]}


@dataclass
class SeedReport:
    admin_created: bool = False
    demo_loaded: bool = False
    logins: list[tuple[str, str]] = field(default_factory=list)


async def bootstrap(session: AsyncSession, settings: Settings) -> SeedReport:
    """The operator institution and the first `admin` (password from JISR_ADMIN_PASSWORD)."""
    report = SeedReport()
    operator = await session.scalar(
        select(Institution).where(Institution.code == settings.operator_code)
    )
    if operator is None:
        operator = Institution(
            code=settings.operator_code,
            name_ar="جسر",
            name_fr=settings.operator_name,
            name_en=settings.operator_name,
            country=settings.operator_country,
            city="-",
            kind=InstitutionKind.OPERATOR.value,
            timezone=settings.operator_timezone,
        )
        session.add(operator)
        await session.flush()
    created = await identity.ensure_admin(
        session, institution_id=operator.id, password=settings.admin_password
    )
    report.admin_created = created is not None
    return report


def read_demo(path: Path = DEMO_FILE) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


async def load_demo(
    session: AsyncSession, report: SeedReport, path: Path = DEMO_FILE
) -> SeedReport:
    """Load the demo partnerships and users once; a second call changes nothing."""
    data = read_demo(path)
    first = data["institutions"][0]["code"]
    if await session.scalar(select(Institution.id).where(Institution.code == first)) is not None:
        return report
    ids: dict[str, int] = {}
    slugs: dict[str, str] = {}
    for item in data["institutions"]:
        row = Institution(
            code=item["code"],
            name_ar=item["names"]["ar"],
            name_fr=item["names"]["fr"],
            name_en=item["names"]["en"],
            country=item["country"],
            city=item["city"],
            kind=item["kind"],
            timezone=item["timezone"],
            imaging_store=item.get("imaging_store"),
        )
        session.add(row)
        await session.flush()
        ids[row.code], slugs[row.code] = row.id, item["slug"]
    codes: dict[str, int] = {}
    for item in data["agreements"]:
        agreement = Agreement(
            code=item["code"],
            title=item["title"],
            kind=item["kind"],
            status=item["status"],
            valid_from=date.fromisoformat(item["valid_from"]),
            valid_until=date.fromisoformat(item["valid_until"])
            if item.get("valid_until")
            else None,
            timezone=item["timezone"],
            renews_id=codes.get(item.get("renews") or ""),
            parties=[
                AgreementParty(institution_id=ids[p["institution"]], role=p["role"])
                for p in item["parties"]
            ],
            lines=[_line(line, ids) for line in item["coverage"]],
        )
        session.add(agreement)
        await session.flush()
        codes[agreement.code] = agreement.id
    demo_hash = passwords.hash_password(DEMO_PASSWORD)  # one hash: argon2 is slow by design
    for item in data["institutions"]:
        for role, suffix in ROLE_NAMES.items():
            username = f"{item['slug']}.{suffix}"
            session.add(
                User(
                    username=username,
                    password_hash=demo_hash,
                    display_name=f"{item['names']['en']}: {suffix}",
                    institution_id=ids[item["code"]],
                    roles=[role.value],
                    languages=LANGUAGES_BY_COUNTRY.get(item["country"], ["en"]),
                    specialties=DEFAULT_SPECIALTIES.get(role, []),
                    disabled=False,
                )
            )
            report.logins.append((username, role.value))
    await session.flush()
    await audit.record(
        session,
        audit.SYSTEM,
        "demo.load",
        details={"institutions": len(ids), "agreements": len(codes)},
    )
    report.demo_loaded = True
    return report


def _line(item: dict[str, Any], ids: dict[str, int]) -> CoverageLine:
    terms = item.get("data_terms") or {}
    return CoverageLine(
        service=item["service"],
        specialties=list(item.get("specialties") or []),
        requesters=[ids[c] for c in item.get("requesters") or []],
        providers=[ids[c] for c in item.get("providers") or []],
        quota=item.get("quota"),
        period=item.get("period", "term"),
        response_hours=dict(item.get("response_hours") or {}),
        identification=terms.get("identification", "pseudonymised"),
        consent_required=bool(terms.get("consent_required", True)),
        note=item.get("note"),
        active=True,
    )
