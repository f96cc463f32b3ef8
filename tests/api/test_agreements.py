"""Agreement administration: who may create, see, suspend, renew and extend agreements."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from shared.audit import AuditEvent
from shared.identity.models import Role
from shared.platform import Platform
from shared.registry.models import Agreement
from tests.factories import Factory


def agreement_body(requester: int, provider: int, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": "AG-2025-OUARGLA-SETIF",
        "title": "Jumelage chirurgie pédiatrique",
        "kind": "twinning",
        "valid_from": "2025-01-01",
        "valid_until": "2027-12-31",
        "parties": [
            {"institution_id": requester, "role": "requester"},
            {"institution_id": provider, "role": "provider"},
        ],
        "coverage": [
            {
                "service": "teleconsultation",
                "specialties": ["paediatric_surgery"],
                "quota": 53,
                "period": "quarter",
                "data_terms": {"identification": "identified", "consent_required": True},
            }
        ],
    }
    body.update(overrides)
    return body


async def audit_actions(platform: Platform) -> list[tuple[str, str]]:
    async with platform.database.transaction() as session:
        rows = await session.scalars(select(AuditEvent).order_by(AuditEvent.id))
        return [(e.action, e.outcome) for e in rows]


class World:
    """Two partner hospitals, a third that is no party, and the operator."""

    def __init__(self, factory: Factory) -> None:
        self.factory = factory

    async def build(self) -> World:
        f = self.factory
        self.ouargla = await f.institution("DZ-OUARGLA-EPH")
        self.setif = await f.institution("DZ-SETIF-CHU")
        self.third = await f.institution(
            "MA-TINGHIR-CHP", country="MA", timezone="Africa/Casablanca"
        )
        self.operator = await f.operator()
        self.coordinator = await f.user(self.ouargla, Role.COORDINATOR)
        self.partner_coordinator = await f.user(self.setif, Role.COORDINATOR)
        self.physician = await f.user(self.ouargla, Role.REFERRING_PHYSICIAN)
        self.outsider = await f.user(self.third, Role.COORDINATOR, Role.ADMIN)
        self.root = await f.user(self.operator, Role.ADMIN)
        return self

    def h(self, user: Any, lang: str | None = None) -> dict[str, str]:
        return self.factory.headers(user, lang)


async def test_a_party_coordinator_creates_an_agreement_with_coverage_and_it_is_audited(
    client: httpx.AsyncClient, factory: Factory, platform: Platform
) -> None:
    w = await World(factory).build()
    response = await client.post(
        "/api/agreements", json=agreement_body(w.ouargla.id, w.setif.id), headers=w.h(w.coordinator)
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "draft"
    assert body["timezone"] == w.setif.timezone
    assert [(p["institution_code"], p["role"]) for p in body["parties"]] == [
        ("DZ-OUARGLA-EPH", "requester"),
        ("DZ-SETIF-CHU", "provider"),
    ]
    line = body["coverage"][0]
    assert (line["service"], line["quota"], line["period"], line["used"]) == (
        "teleconsultation",
        53,
        "quarter",
        0,
    )
    assert ("agreement.create", "ok") in await audit_actions(platform)


async def test_who_may_not_create_an_agreement_is_refused_and_audited(
    client: httpx.AsyncClient, factory: Factory, platform: Platform
) -> None:
    w = await World(factory).build()
    body = agreement_body(w.ouargla.id, w.setif.id)
    physician = await client.post("/api/agreements", json=body, headers=w.h(w.physician))
    assert physician.status_code == 403
    assert physician.json()["rule"] == "party_coordinator_required"
    outsider = await client.post("/api/agreements", json=body, headers=w.h(w.outsider))
    assert outsider.status_code == 403
    anonymous = await client.post("/api/agreements", json=body)
    assert anonymous.status_code == 401
    async with platform.database.transaction() as session:
        assert await session.scalar(select(Agreement.id)) is None
    assert await audit_actions(platform) == [
        ("agreement.create", "refused"),
        ("agreement.create", "refused"),
    ]


async def test_the_operator_admin_may_create_any_agreement(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    w = await World(factory).build()
    response = await client.post(
        "/api/agreements",
        json=agreement_body(w.ouargla.id, w.setif.id, status="active"),
        headers=w.h(w.root),
    )
    assert response.status_code == 201
    assert response.json()["status"] == "active"


async def test_bad_agreements_get_a_problem_and_change_nothing(
    client: httpx.AsyncClient, factory: Factory, platform: Platform
) -> None:
    w = await World(factory).build()
    good = agreement_body(w.ouargla.id, w.setif.id)
    bad_bodies = [
        {**good, "valid_until": "2020-01-01"},
        {**good, "parties": [good["parties"][0], good["parties"][0]]},
        {
            **good,
            "parties": [
                {"institution_id": w.ouargla.id, "role": "requester"},
                {"institution_id": w.setif.id, "role": "requester"},
            ],
        },
        {**good, "coverage": [{"service": "telepathy"}]},
        {**good, "coverage": [{"service": "second_opinion", "specialties": ["astrology"]}]},
        {**good, "coverage": [{"service": "second_opinion", "quota": -1}]},
        {**good, "timezone": "Mars/Olympus_Mons"},
        {**good, "code": "lower case"},
        {**good, "status": "expired"},
        {**good, "unexpected": 1},
        {**good, "coverage": [{"service": "second_opinion", "providers": [w.ouargla.id]}]},
    ]
    for bad in bad_bodies:
        response = await client.post("/api/agreements", json=bad, headers=w.h(w.coordinator))
        assert response.status_code == 422, (bad, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    not_json = await client.post(
        "/api/agreements",
        content=b'{"code": ',
        headers={**w.h(w.coordinator), "content-type": "application/json"},
    )
    assert not_json.status_code == 422
    unknown_party = agreement_body(w.ouargla.id, 999_999)
    unknown = await client.post("/api/agreements", json=unknown_party, headers=w.h(w.root))
    assert unknown.status_code == 422
    async with platform.database.transaction() as session:
        assert await session.scalar(select(Agreement.id)) is None


async def test_a_duplicate_code_is_a_conflict(client: httpx.AsyncClient, factory: Factory) -> None:
    w = await World(factory).build()
    body = agreement_body(w.ouargla.id, w.setif.id)
    assert (
        await client.post("/api/agreements", json=body, headers=w.h(w.coordinator))
    ).status_code == 201
    again = await client.post("/api/agreements", json=body, headers=w.h(w.coordinator))
    assert again.status_code == 409
    assert again.json()["type"] == "urn:jisr:problem:conflict"


async def test_agreements_are_visible_to_their_parties_only(
    client: httpx.AsyncClient, factory: Factory, platform: Platform
) -> None:
    w = await World(factory).build()
    agreement = await factory.agreement(w.ouargla, w.setif)
    for user in (w.coordinator, w.partner_coordinator, w.physician):
        listed = await client.get("/api/agreements", headers=w.h(user))
        assert [a["id"] for a in listed.json()["items"]] == [agreement.id]
        assert (
            await client.get(f"/api/agreements/{agreement.id}", headers=w.h(user))
        ).status_code == 200
    listed = await client.get("/api/agreements", headers=w.h(w.outsider))
    assert listed.json()["items"] == [] and listed.json()["pagination"]["total_count"] == 0
    hidden = await client.get(f"/api/agreements/{agreement.id}", headers=w.h(w.outsider))
    missing = await client.get("/api/agreements/999999", headers=w.h(w.outsider))
    assert hidden.status_code == missing.status_code == 404
    assert {
        k: v for k, v in hidden.json().items() if k not in ("instance", "request_id", "detail")
    } == {k: v for k, v in missing.json().items() if k not in ("instance", "request_id", "detail")}
    coverage = await client.get(f"/api/agreements/{agreement.id}/coverage", headers=w.h(w.outsider))
    assert coverage.status_code == 404
    assert ("agreement.read", "refused") in await audit_actions(platform)


async def test_listing_is_paginated_and_filtered(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    w = await World(factory).build()
    for n in range(5):
        await factory.agreement(
            w.ouargla, w.setif, code=f"AG-P-{n}", status="draft" if n % 2 else "active"
        )
    page = await client.get("/api/agreements?limit=2&page=2", headers=w.h(w.coordinator))
    assert page.status_code == 200
    assert len(page.json()["items"]) == 2
    assert page.json()["pagination"] == {"total_count": 5, "page": 2, "limit": 2, "max_page": 3}
    drafts = await client.get("/api/agreements?status=draft", headers=w.h(w.coordinator))
    assert sorted(a["code"] for a in drafts.json()["items"]) == ["AG-P-1", "AG-P-3"]
    for query in ("limit=0", "limit=500", "page=0", "status=dormant", "page=abc"):
        bad = await client.get(f"/api/agreements?{query}", headers=w.h(w.coordinator))
        assert bad.status_code == 422, query


async def test_status_changes_follow_the_lifecycle(
    client: httpx.AsyncClient, factory: Factory, platform: Platform
) -> None:
    w = await World(factory).build()
    agreement = await factory.agreement(w.ouargla, w.setif, status="draft")
    url = f"/api/agreements/{agreement.id}"
    suspend_draft = await client.post(f"{url}/suspend", headers=w.h(w.coordinator))
    assert suspend_draft.status_code == 409
    assert suspend_draft.json()["current_status"] == "draft"
    steps = [
        ("activate", "active"),
        ("suspend", "suspended"),
        ("activate", "active"),
        ("terminate", "terminated"),
    ]
    for action, expected in steps:
        response = await client.post(
            f"{url}/{action}", json={"reason": "board decision"}, headers=w.h(w.partner_coordinator)
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == expected
    assert (await client.post(f"{url}/activate", headers=w.h(w.coordinator))).status_code == 409
    refused = await client.post(f"{url}/suspend", headers=w.h(w.physician))
    assert refused.status_code == 403
    hidden = await client.post(f"{url}/suspend", headers=w.h(w.outsider))
    assert hidden.status_code == 404
    assert (await client.post(f"{url}/explode", headers=w.h(w.coordinator))).status_code == 422
    actions = [a for a, outcome in await audit_actions(platform) if outcome == "ok"]
    assert actions == [
        "agreement.activate",
        "agreement.suspend",
        "agreement.activate",
        "agreement.terminate",
    ]


async def test_a_suspended_agreement_refuses_decisions_until_resumed(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    w = await World(factory).build()
    agreement = await factory.agreement(w.ouargla, w.setif, lines=[{"service": "teleconsultation"}])
    url = f"/api/entitlements/decide?provider={w.setif.code}&service=teleconsultation"
    assert (await client.get(url, headers=w.h(w.physician))).json()["allowed"] is True
    await client.post(f"/api/agreements/{agreement.id}/suspend", headers=w.h(w.coordinator))
    refused = (await client.get(url, headers=w.h(w.physician, "fr"))).json()
    assert refused["allowed"] is False and refused["rule"] == "agreement_suspended"
    assert refused["reasons"][0]["text"] == f"la convention {agreement.code} est suspendue"
    await client.post(f"/api/agreements/{agreement.id}/activate", headers=w.h(w.coordinator))
    assert (await client.get(url, headers=w.h(w.physician))).json()["allowed"] is True


async def test_renewal_copies_parties_and_coverage_and_supersedes_when_active(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    w = await World(factory).build()
    old = await factory.agreement(
        w.ouargla,
        w.setif,
        code="AG-2016-T",
        valid_from=__import__("datetime").date(2016, 5, 1),
        lines=[
            {
                "service": "second_opinion",
                "specialties": ["nephrology"],
                "quota": 4,
                "period": "year",
            }
        ],
    )
    body = {
        "code": "AG-2024-T",
        "valid_from": "2024-09-01",
        "valid_until": "2029-08-31",
        "status": "active",
    }
    response = await client.post(
        f"/api/agreements/{old.id}/renew", json=body, headers=w.h(w.coordinator)
    )
    assert response.status_code == 201, response.text
    new = response.json()
    assert new["renews_id"] == old.id and new["status"] == "active"
    assert [(line["service"], line["specialties"], line["quota"]) for line in new["coverage"]] == [
        ("second_opinion", ["nephrology"], 4)
    ]
    assert len(new["parties"]) == 2
    again = await client.post(
        f"/api/agreements/{old.id}/renew",
        json={**body, "code": "AG-2025-T"},
        headers=w.h(w.coordinator),
    )
    assert again.status_code == 409
    decided = await client.get(
        f"/api/entitlements/decide?provider={w.setif.id}&service=second_opinion&specialty=nephrology",
        headers=w.h(w.physician),
    )
    assert decided.json()["agreement_code"] == "AG-2024-T"
    before = await client.get(
        f"/api/entitlements/decide?provider={w.setif.id}&service=second_opinion&specialty=nephrology"
        "&at=2020-06-01T12:00:00Z",
        headers=w.h(w.physician),
    )
    assert before.json()["agreement_code"] == "AG-2016-T" and before.json()["allowed"] is True
    old_view = await client.get(f"/api/agreements/{old.id}", headers=w.h(w.coordinator))
    assert old_view.json()["renewed_by"] == [new["id"]]
    refused = await client.post(
        f"/api/agreements/{old.id}/renew", json={**body, "code": "AG-X"}, headers=w.h(w.outsider)
    )
    assert refused.status_code == 404
    early = await client.post(
        f"/api/agreements/{new['id']}/renew",
        json={**body, "code": "AG-EARLY", "valid_from": "2010-01-01"},
        headers=w.h(w.coordinator),
    )
    assert early.status_code == 422


async def test_coverage_lines_can_be_added_and_withdrawn_by_managers_only(
    client: httpx.AsyncClient, factory: Factory, platform: Platform
) -> None:
    w = await World(factory).build()
    agreement = await factory.agreement(w.ouargla, w.setif, lines=[])
    url = f"/api/agreements/{agreement.id}/coverage"
    line = {
        "service": "imaging_review",
        "specialties": ["radiology"],
        "quota": 10,
        "period": "month",
        "data_terms": {"identification": "anonymised", "consent_required": False},
        "response_hours": {"routine": 72, "urgent": 24, "emergency": 2},
    }
    refused = await client.post(url, json=line, headers=w.h(w.physician))
    assert refused.status_code == 403
    created = await client.post(url, json=line, headers=w.h(w.coordinator))
    assert created.status_code == 201, created.text
    line_id = created.json()["id"]
    assert created.json()["response_hours"] == {"routine": 72, "urgent": 24, "emergency": 2}
    decide = f"/api/entitlements/decide?provider={w.setif.code}&service=imaging_review&specialty=radiology"
    decision = (await client.get(decide, headers=w.h(w.physician))).json()
    assert decision["allowed"] is True
    assert decision["data_terms"] == {"identification": "anonymised", "consent_required": False}
    assert decision["remaining"] == 10 and decision["period"] == "month"
    listed = await client.get(url, headers=w.h(w.physician))
    assert [c["id"] for c in listed.json()] == [line_id]
    assert (await client.delete(f"{url}/{line_id}", headers=w.h(w.physician))).status_code == 403
    withdrawn = await client.delete(f"{url}/{line_id}", headers=w.h(w.partner_coordinator))
    assert withdrawn.status_code == 200 and withdrawn.json()["active"] is False
    decision = (await client.get(decide, headers=w.h(w.physician))).json()
    assert decision["allowed"] is False and decision["rule"] == "service_not_covered"
    assert (await client.delete(f"{url}/424242", headers=w.h(w.coordinator))).status_code == 404
    actions = [a for a, outcome in await audit_actions(platform) if outcome == "ok"]
    assert actions == ["coverage.create", "coverage.withdraw"]
