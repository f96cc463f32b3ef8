"""First start: the operator, `admin`, and the demo partnerships of DESIGN.md."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from sqlalchemy import func, select

from jisr import seed
from shared.entitlements.model import ServiceKind
from shared.identity.models import Role, User
from shared.platform import Platform
from shared.registry import repository, service
from shared.registry.models import Agreement, Institution


async def seeded(platform: Platform) -> seed.SeedReport:
    async with platform.database.transaction() as session:
        report = await seed.bootstrap(session, platform.settings)
        return await seed.load_demo(session, report)


async def test_seeding_twice_changes_nothing(platform: Platform) -> None:
    first = await seeded(platform)
    second = await seeded(platform)
    assert first.admin_created and first.demo_loaded
    assert not second.admin_created and not second.demo_loaded
    async with platform.database.transaction() as session:
        admins = await session.scalar(
            select(func.count()).select_from(User).where(User.username == "admin")
        )
        institutions = await session.scalar(select(func.count()).select_from(Institution))
    assert admins == 1
    assert institutions == len(seed.read_demo()["institutions"]) + 1  # and the operator


async def test_every_demo_institution_has_one_user_per_role(platform: Platform) -> None:
    await seeded(platform)
    async with platform.database.transaction() as session:
        users = list(await session.scalars(select(User).where(User.username != "admin")))
    roles_by_institution: dict[int, set[str]] = {}
    for user in users:
        roles_by_institution.setdefault(user.institution_id, set()).update(user.roles)
    assert len(roles_by_institution) == len(seed.read_demo()["institutions"])
    assert all(roles == {r.value for r in Role} for roles in roles_by_institution.values())


async def test_the_demo_models_the_partnerships_of_the_design(platform: Platform) -> None:
    await seeded(platform)
    at = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    async with platform.database.transaction() as session:
        code = {row.code: row.id for row in await session.scalars(select(Institution))}
        renewal = await repository.agreement_by_code(session, "AG-2024-ORAN-APHP")
        old = await repository.agreement_by_code(session, "AG-2016-ORAN-APHP")
        assert renewal is not None and old is not None and renewal.renews_id == old.id
        oran_aphp = await service.decide(
            session,
            requester=code["DZ-ORAN-EHU"],
            provider=code["FR-PARIS-APHP"],
            service=ServiceKind.SECOND_OPINION,
            specialty="nephrology",
            at=at,
        )
        assert oran_aphp.allowed and oran_aphp.agreement_code == "AG-2024-ORAN-APHP"
        in_2021 = await service.decide(
            session,
            requester=code["DZ-ORAN-EHU"],
            provider=code["FR-PARIS-APHP"],
            service=ServiceKind.SECOND_OPINION,
            specialty="nephrology",
            at=datetime(2021, 6, 1, tzinfo=UTC),
        )
        assert not in_2021.allowed
        assert in_2021.explain("en")[0] == "agreement AG-2016-ORAN-APHP expired on 2019-12-31"
        twinning = await service.decide(
            session,
            requester=code["DZ-OUARGLA-EPH"],
            provider=code["DZ-SETIF-CHU"],
            service=ServiceKind.TELECONSULTATION,
            specialty="paediatric_surgery",
            at=at,
        )
        assert twinning.allowed and twinning.quota == 53 and twinning.period == "quarter"
        for provider in (
            "FR-PARIS-CURIE",
            "FR-SURESNES-FOCH",
            "FR-PARIS-IMM",
            "FR-PARIS-ROTHSCHILD",
            "FR-PARIS-ALMAVIVA",
        ):
            rows = await repository.agreements_between(
                session, code["KW-KUWAIT-MOH"], code[provider]
            )
            assert [a.kind for a in rows] == ["memorandum"], provider
        drafts = await session.scalar(
            select(func.count()).select_from(Agreement).where(Agreement.status == "draft")
        )
        assert drafts and drafts >= 1


async def test_a_demo_referrer_signs_in_and_gets_a_reasoned_decision(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    await seeded(platform)
    token = await client.post(
        "/auth/token", data={"username": "oran.referrer", "password": seed.DEMO_PASSWORD}
    )
    assert token.status_code == 200
    headers = {"Authorization": f"Bearer {token.json()['access_token']}", "Accept-Language": "fr"}
    decision = await client.get(
        "/api/entitlements/decide?provider=FR-PARIS-APHP&service=second_opinion&specialty=nephrology",
        headers=headers,
    )
    assert decision.status_code == 200
    assert decision.json()["allowed"] is True
    assert decision.json()["reasons"][0]["text"].startswith(
        "autorisé par la convention AG-2024-ORAN-APHP"
    )
    admin = await client.post(
        "/auth/token", data={"username": "admin", "password": platform.settings.admin_password}
    )
    assert admin.status_code == 200
