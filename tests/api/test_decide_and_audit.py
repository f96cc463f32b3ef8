"""`GET /api/entitlements/decide` and `GET /api/audit`."""

from __future__ import annotations

from datetime import date

import httpx

from shared.identity.models import Role
from tests.factories import Factory


async def test_decide_answers_with_the_line_terms_and_reasons(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    kuwait = await factory.institution("KW-KUWAIT-MOH", country="KW", timezone="Asia/Kuwait")
    curie = await factory.institution("FR-PARIS-CURIE", country="FR", timezone="Europe/Paris")
    agreement = await factory.agreement(
        kuwait,
        curie,
        code="AG-2025-KWMOH-CURIE",
        valid_from=date(2025, 7, 18),
        valid_until=date(2028, 7, 17),
        lines=[
            {
                "service": "second_opinion",
                "specialties": ["medical_oncology"],
                "quota": 120,
                "period": "year",
                "response_hours": {"routine": 120, "urgent": 48, "emergency": 12},
            }
        ],
    )
    physician = await factory.user(kuwait, Role.REFERRING_PHYSICIAN, languages=("ar",))
    url = f"/api/entitlements/decide?provider={curie.code}&service=second_opinion&specialty=medical_oncology"
    response = await client.get(url, headers=factory.headers(physician))
    assert response.status_code == 200
    body = response.json()
    assert body["allowed"] is True and body["agreement_id"] == agreement.id
    assert body["requester_id"] == kuwait.id and body["provider_id"] == curie.id
    assert (body["quota"], body["used"], body["remaining"]) == (120, 0, 120)
    assert body["response_hours"] == {"routine": 120, "urgent": 48, "emergency": 12}
    assert "AG-2025-KWMOH-CURIE" in body["reasons"][0]["text"]
    assert "الاتفاقية" in body["reasons"][0]["text"]  # the user's own language without a header
    backwards = await factory.user(curie, Role.REFERRING_PHYSICIAN)
    reverse = await client.get(
        f"/api/entitlements/decide?provider={kuwait.code}&service=second_opinion&specialty=medical_oncology",
        headers=factory.headers(backwards),
    )
    assert reverse.json()["allowed"] is False and reverse.json()["rule"] == "wrong_direction"


async def test_decide_refuses_with_the_rule_that_stood_in_the_way(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    oran = await factory.institution("DZ-ORAN-EHU")
    aphp = await factory.institution("FR-PARIS-APHP", country="FR", timezone="Europe/Paris")
    third = await factory.institution("MA-TINGHIR-CHP")
    await factory.agreement(
        oran,
        aphp,
        code="AG-2016-07",
        status="expired",
        valid_from=date(2016, 5, 1),
        valid_until=date(2019, 12, 31),
    )
    physician = await factory.user(oran, Role.REFERRING_PHYSICIAN)
    body = (
        await client.get(
            f"/api/entitlements/decide?provider={aphp.id}&service=second_opinion",
            headers=factory.headers(physician),
        )
    ).json()
    assert body["allowed"] is False and body["rule"] == "agreement_expired"
    assert body["reasons"][0]["text"] == "agreement AG-2016-07 expired on 2019-12-31"
    none = (
        await client.get(
            f"/api/entitlements/decide?provider={third.code}&service=second_opinion",
            headers=factory.headers(physician),
        )
    ).json()
    assert none["rule"] == "no_agreement"
    assert none["reasons"][0]["text"] == "no agreement between DZ-ORAN-EHU and MA-TINGHIR-CHP"


async def test_decide_rejects_bad_questions_clearly(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    oran = await factory.institution()
    aphp = await factory.institution()
    physician = await factory.user(oran, Role.REFERRING_PHYSICIAN)
    h = factory.headers(physician)
    base = f"/api/entitlements/decide?provider={aphp.id}"
    assert (await client.get(f"{base}&service=telepathy", headers=h)).status_code == 422
    assert (
        await client.get(f"{base}&service=training&specialty=astrology", headers=h)
    ).status_code == 422
    assert (await client.get(f"{base}&service=training&at=yesterday", headers=h)).status_code == 422
    assert (
        await client.get(f"{base}&service=training&at=2025-01-01T00:00:00", headers=h)
    ).status_code == 422
    assert (
        await client.get("/api/entitlements/decide?provider=NOPE&service=training", headers=h)
    ).status_code == 404
    assert (
        await client.get("/api/entitlements/decide?service=training", headers=h)
    ).status_code == 422
    assert (await client.get(f"{base}&service=training")).status_code == 401
    on_behalf = await client.get(f"{base}&service=training&requester={aphp.id}", headers=h)
    assert on_behalf.status_code == 403 and on_behalf.json()["rule"] == "operator_required"
    root = await factory.user(await factory.operator(), Role.ADMIN)
    as_operator = await client.get(
        f"{base}&service=training&requester={oran.id}", headers=factory.headers(root)
    )
    assert as_operator.status_code == 200 and as_operator.json()["requester_id"] == oran.id


async def test_auditors_read_the_trail_of_their_institution_only(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    oran = await factory.institution()
    setif = await factory.institution()
    third = await factory.institution()
    root_inst = await factory.operator()
    coordinator = await factory.user(oran, Role.COORDINATOR)
    auditor = await factory.user(oran, Role.AUDITOR)
    partner_auditor = await factory.user(setif, Role.AUDITOR)
    third_auditor = await factory.user(third, Role.AUDITOR)
    platform_auditor = await factory.user(root_inst, Role.AUDITOR)
    body = {
        "code": "AG-AUDIT-1",
        "title": "t",
        "kind": "twinning",
        "valid_from": "2025-01-01",
        "parties": [
            {"institution_id": oran.id, "role": "requester"},
            {"institution_id": setif.id, "role": "provider"},
        ],
    }
    created = await client.post("/api/agreements", json=body, headers=factory.headers(coordinator))
    request_id = created.headers["x-request-id"]
    await client.post(
        f"/api/agreements/{created.json()['id']}/activate", headers=factory.headers(coordinator)
    )
    mine = (await client.get("/api/audit", headers=factory.headers(auditor))).json()
    assert [e["action"] for e in mine["items"]] == ["agreement.activate", "agreement.create"]
    first = mine["items"][1]
    assert first["actor_username"] == coordinator.username and first["institution_id"] == oran.id
    assert first["request_id"] == request_id and first["resource_id"] == str(created.json()["id"])
    filtered = (
        await client.get("/api/audit?action=agreement.create", headers=factory.headers(auditor))
    ).json()
    assert [e["action"] for e in filtered["items"]] == ["agreement.create"]
    prefix = (
        await client.get("/api/audit?action=agreement.&limit=1", headers=factory.headers(auditor))
    ).json()
    assert prefix["pagination"]["total_count"] == 2 and len(prefix["items"]) == 1
    by_request = (
        await client.get(f"/api/audit?request_id={request_id}", headers=factory.headers(auditor))
    ).json()
    assert [e["action"] for e in by_request["items"]] == ["agreement.create"]
    assert (await client.get("/api/audit", headers=factory.headers(third_auditor))).json()[
        "items"
    ] == []
    assert (await client.get("/api/audit", headers=factory.headers(partner_auditor))).json()[
        "items"
    ] == []
    everything = (await client.get("/api/audit", headers=factory.headers(platform_auditor))).json()
    assert everything["pagination"]["total_count"] >= 2
    refused = await client.get("/api/audit", headers=factory.headers(coordinator))
    assert refused.status_code == 403 and refused.json()["rule"] == "auditor_required"
    seen = (await client.get("/api/audit?outcome=refused", headers=factory.headers(auditor))).json()
    assert [(e["action"], e["rule"]) for e in seen["items"]] == [("audit.read", "auditor_required")]
    for bad in ("outcome=maybe", "since=tuesday", "limit=100000"):
        assert (
            await client.get(f"/api/audit?{bad}", headers=factory.headers(auditor))
        ).status_code == 422


async def test_unknown_paths_and_methods_are_problems(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user(await factory.institution(), Role.SPECIALIST)
    missing = await client.get("/api/nothing-here", headers=factory.headers(user))
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    wrong = await client.put("/api/audit", headers=factory.headers(user))
    assert (
        wrong.status_code == 405 and wrong.json()["type"] == "urn:jisr:problem:method-not-allowed"
    )
    assert (
        await client.get("/api/agreements/not-a-number", headers=factory.headers(user))
    ).status_code == 422
    assert (await client.get("/health")).json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["database"] == "ok"
    docs = await client.get("/openapi.json")
    assert "/api/entitlements/decide" in docs.json()["paths"]
