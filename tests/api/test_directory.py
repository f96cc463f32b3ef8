"""Institutions, users and the vocabulary: the directory every screen is built from."""

from __future__ import annotations

import httpx

from shared.identity.models import Role
from tests.factories import PASSWORD, Factory

NEW_INSTITUTION = {
    "code": "MA-BOUMALNE-HP",
    "names": {
        "ar": "مستشفى بومالن دادس",
        "fr": "Hôpital de Boumalne Dadès",
        "en": "Boumalne Dadès Hospital",
    },
    "country": "MA",
    "city": "Boumalne Dadès",
    "kind": "general_hospital",
    "timezone": "Africa/Casablanca",
}


async def test_only_the_operator_admin_registers_institutions(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    operator = await factory.operator()
    hospital = await factory.institution()
    root = await factory.user(operator, Role.ADMIN)
    local_admin = await factory.user(hospital, Role.ADMIN, Role.COORDINATOR)
    refused = await client.post(
        "/api/institutions", json=NEW_INSTITUTION, headers=factory.headers(local_admin)
    )
    assert refused.status_code == 403 and refused.json()["rule"] == "operator_admin_required"
    created = await client.post(
        "/api/institutions", json=NEW_INSTITUTION, headers=factory.headers(root, "ar")
    )
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "مستشفى بومالن دادس"
    again = await client.post(
        "/api/institutions", json=NEW_INSTITUTION, headers=factory.headers(root)
    )
    assert again.status_code == 409
    by_code = await client.get(
        "/api/institutions/ma-boumalne-hp", headers=factory.headers(local_admin, "fr")
    )
    assert by_code.status_code == 200 and by_code.json()["name"] == "Hôpital de Boumalne Dadès"
    by_id = await client.get(
        f"/api/institutions/{created.json()['id']}", headers=factory.headers(local_admin)
    )
    assert by_id.json()["code"] == "MA-BOUMALNE-HP"
    assert (
        await client.get("/api/institutions/NOPE", headers=factory.headers(root))
    ).status_code == 404
    assert (await client.get("/api/institutions")).status_code == 401


async def test_malformed_institutions_are_refused(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    root = await factory.user(await factory.operator(), Role.ADMIN)
    for bad in (
        {**NEW_INSTITUTION, "country": "Morocco"},
        {**NEW_INSTITUTION, "timezone": "Africa/Atlantis"},
        {**NEW_INSTITUTION, "kind": "spa"},
        {**NEW_INSTITUTION, "names": {"en": "only english"}},
        {**NEW_INSTITUTION, "code": "x"},
    ):
        response = await client.post("/api/institutions", json=bad, headers=factory.headers(root))
        assert response.status_code == 422, bad
        assert response.json()["errors"], bad
    listed = await client.get("/api/institutions", headers=factory.headers(root))
    assert listed.json()["pagination"]["total_count"] == 1  # the operator only


async def test_admins_create_users_in_their_own_institution_only(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    oran = await factory.institution("DZ-ORAN-EHU")
    paris = await factory.institution("FR-PARIS-APHP", country="FR", timezone="Europe/Paris")
    admin = await factory.user(oran, Role.ADMIN)
    coordinator = await factory.user(oran, Role.COORDINATOR)
    body = {
        "username": "dr.benali",
        "password": "a-long-password",
        "display_name": "Dr Benali",
        "institution_id": oran.id,
        "roles": ["specialist"],
        "languages": ["fr", "ar"],
        "specialties": ["nephrology"],
    }
    refused = await client.post("/api/users", json=body, headers=factory.headers(coordinator))
    assert refused.status_code == 403
    elsewhere = await client.post(
        "/api/users", json={**body, "institution_id": paris.id}, headers=factory.headers(admin)
    )
    assert elsewhere.status_code == 403
    created = await client.post("/api/users", json=body, headers=factory.headers(admin))
    assert created.status_code == 201, created.text
    assert created.json()["roles"] == ["specialist"] and "password" not in created.json()
    token = await client.post(
        "/auth/token", data={"username": "dr.benali", "password": "a-long-password"}
    )
    assert token.status_code == 200
    taken = await client.post("/api/users", json=body, headers=factory.headers(admin))
    assert taken.status_code == 409
    for bad in (
        {**body, "username": "Dr Benali!"},
        {**body, "password": "short"},
        {**body, "roles": ["surgeon-general"]},
        {**body, "languages": ["de"]},
        {**body, "specialties": ["astrology"]},
        {**body, "roles": []},
    ):
        response = await client.post(
            "/api/users",
            json={**bad, "username": "dr.x"} if bad["username"] == body["username"] else bad,
            headers=factory.headers(admin),
        )
        assert response.status_code == 422, bad


async def test_an_admin_disables_a_user_whose_tokens_then_stop_working(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    oran = await factory.institution()
    other = await factory.institution()
    admin = await factory.user(oran, Role.ADMIN)
    foreign_admin = await factory.user(other, Role.ADMIN)
    doctor = await factory.user(oran, Role.REFERRING_PHYSICIAN, username="dr.leaving")
    headers = factory.headers(doctor)
    assert (await client.get("/api/users/me", headers=headers)).status_code == 200
    assert (
        await client.get(f"/api/users/{doctor.id}", headers=factory.headers(foreign_admin))
    ).status_code == 404
    assert (
        await client.get(f"/api/users/{doctor.id}", headers=factory.headers(admin))
    ).status_code == 200
    foreign = await client.patch(
        f"/api/users/{doctor.id}", json={"disabled": True}, headers=factory.headers(foreign_admin)
    )
    assert foreign.status_code == 404
    self_service = await client.patch(
        f"/api/users/{doctor.id}", json={"disabled": True}, headers=headers
    )
    assert self_service.status_code == 403
    response = await client.patch(
        f"/api/users/{doctor.id}", json={"disabled": True}, headers=factory.headers(admin)
    )
    assert response.status_code == 200 and response.json()["disabled"] is True
    assert (await client.get("/api/users/me", headers=headers)).status_code == 401
    signin = await client.post("/auth/token", data={"username": "dr.leaving", "password": PASSWORD})
    assert signin.status_code == 401
    suicide = await client.patch(
        f"/api/users/{admin.id}", json={"disabled": True}, headers=factory.headers(admin)
    )
    assert suicide.status_code == 409


async def test_user_lists_are_scoped_and_paginated(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    oran = await factory.institution()
    paris = await factory.institution()
    root = await factory.user(await factory.operator(), Role.ADMIN)
    admin = await factory.user(oran, Role.ADMIN)
    for _ in range(3):
        await factory.user(oran, Role.SPECIALIST)
        await factory.user(paris, Role.SPECIALIST)
    mine = await client.get("/api/users?limit=2", headers=factory.headers(admin))
    assert mine.json()["pagination"]["total_count"] == 4
    assert {u["institution_id"] for u in mine.json()["items"]} == {oran.id}
    everyone = await client.get("/api/users", headers=factory.headers(root))
    assert everyone.json()["pagination"]["total_count"] == 8
    specialist = await factory.user(oran, Role.SPECIALIST)
    assert (await client.get("/api/users", headers=factory.headers(specialist))).status_code == 403


async def test_the_vocabulary_speaks_the_callers_language(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user(await factory.institution(), Role.SPECIALIST)
    fr = (await client.get("/api/vocabulary", headers=factory.headers(user, "fr"))).json()
    ar = (await client.get("/api/vocabulary", headers=factory.headers(user, "ar"))).json()
    cardio_fr = next(t for t in fr["specialties"] if t["code"] == "cardiology")
    cardio_ar = next(t for t in ar["specialties"] if t["code"] == "cardiology")
    assert cardio_fr["label"] == "Cardiologie" and cardio_fr["snomed"] == "394579002"
    assert cardio_ar["label"] != cardio_fr["label"]
    assert [k["code"] for k in fr["service_kinds"]] == [
        "second_opinion",
        "teleconsultation",
        "imaging_review",
        "patient_transfer",
        "visiting_mission",
        "training",
    ]
    assert (await client.get("/api/vocabulary")).status_code == 401
