"""Sharing a study with a referral's provider: decided, de-identified, gated, audited."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.uid import UltrasoundImageStorage, generate_uid
from sqlalchemy import select

from services.imaging import deid
from services.imaging.locations import originals, shared_copies
from services.referral import privacy
from services.referral.referrals.models import Referral
from shared.audit import AuditEvent
from shared.identity.models import Role, User
from shared.platform import Platform
from shared.registry.models import Institution
from tests.factories import Factory
from tests.imaging.factories import Archive, instance

SPECIALTY = "paediatric_surgery"


@dataclass
class Sharing:
    """Ouargla refers to Sétif under a twinning with an imaging_review line; Tinghir is a stranger."""

    factory: Factory
    client: httpx.AsyncClient
    platform: Platform
    origin: Institution
    provider: Institution
    third: Institution
    referrer: User
    provider_radiologist: User
    stranger: User
    archive: Archive
    referral_id: int

    def h(self, user: User) -> dict[str, str]:
        return self.factory.headers(user)

    async def share(self, study_uid: str | None = None, user: User | None = None) -> httpx.Response:
        body = {"study_uid": study_uid or self.archive.study_a, "referral_id": self.referral_id}
        return await self.client.post(
            "/api/imaging/shares", json=body, headers=self.h(user or self.referrer)
        )

    async def referral(self) -> Referral:
        async with self.platform.database.transaction() as session:
            row = await session.get(Referral, self.referral_id)
            assert row is not None
            return row

    async def audit(self, action: str) -> list[AuditEvent]:
        async with self.platform.database.transaction() as session:
            return list(
                await session.scalars(
                    select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
                )
            )

    async def shared_studies(self) -> list[str]:
        async with shared_copies(self.platform) as store:
            return [study.study_uid for study in await store.studies()]


async def put_originals(platform: Platform, institution: Institution, files: list[bytes]) -> None:
    async with originals(platform, institution) as store:
        for data in files:
            await store.put(data)


async def make_sharing(
    factory: Factory,
    client: httpx.AsyncClient,
    platform: Platform,
    *,
    imaging_line: bool = True,
    extra_files: list[bytes] | None = None,
    identification: str = "pseudonymised",
    imaging_terms: dict[str, Any] | None = None,
) -> Sharing:
    f = factory
    origin = await f.institution()
    provider = await f.institution()
    third = await f.institution(country="MA", timezone="Africa/Casablanca")
    lines: list[dict[str, Any]] = [{"service": "second_opinion", "specialties": [SPECIALTY]}]
    if imaging_line:
        lines.append(
            {
                "service": "imaging_review",
                "specialties": [SPECIALTY],
                "identification": identification,
                "imaging": imaging_terms,
            }
        )
    await f.agreement(origin, provider, valid_from=date(2020, 1, 1), lines=lines)
    archive = Archive()
    extra = extra_files or []
    await put_originals(platform, origin, archive.of_study(archive.study_a) + extra)
    referrer = await f.user(origin, Role.REFERRING_PHYSICIAN)
    extra_studies = {str(pydicom.dcmread(io.BytesIO(d)).StudyInstanceUID) for d in extra}
    study_uids = [archive.study_a, *sorted(extra_studies)]
    response = await client.post(
        "/api/referrals",
        json={
            "patient": {
                "local_id": "OUA-1",
                "name": "Jane Doe",
                "sex": "F",
                "birth_date": "1980-02-03",
            },
            "question": "Second opinion on the chest CT?",
            "summary": "Cough for three months.",
            "specialty": SPECIALTY,
            "urgency": "routine",
            "service": "second_opinion",
            "languages": ["fr"],
            "study_uids": study_uids,
        },
        headers=f.headers(referrer),
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "offered"
    return Sharing(
        factory=f,
        client=client,
        platform=platform,
        origin=origin,
        provider=provider,
        third=third,
        referrer=referrer,
        provider_radiologist=await f.user(provider, Role.RADIOLOGIST),
        stranger=await f.user(third, Role.RADIOLOGIST, Role.COORDINATOR),
        archive=archive,
        referral_id=response.json()["id"],
    )


@pytest.fixture
async def sharing(factory: Factory, client: httpx.AsyncClient, platform: Platform) -> Sharing:
    return await make_sharing(factory, client, platform)


def ultrasound_without_burned_in_flag() -> bytes:
    """An ultrasound image that does not say whether text is burned into its pixels."""
    ds = pydicom.dcmread(io.BytesIO(instance(study_uid=generate_uid(), series_uid=generate_uid())))
    ds.Modality = "US"
    ds.SOPClassUID = UltrasoundImageStorage
    ds.file_meta.MediaStorageSOPClassUID = UltrasoundImageStorage
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def with_name_in_private_tag() -> bytes:
    """A CT image whose private block carries the patient's name as bytes, in a tag a line calls
    safe: the engine keeps bytes as they are (it cannot clean them), only the gate reads them."""
    ds = pydicom.dcmread(io.BytesIO(instance(study_uid=generate_uid(), series_uid=generate_uid())))
    ds.private_block(0x0009, "JISR_TEST", create=True).add_new(0x10, "OB", b"Doe^Jane")
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def original_identifiers(files: list[bytes]) -> deid.Identifiers:
    datasets = [pydicom.dcmread(io.BytesIO(d)) for d in files]
    found = deid.identifiers_of(datasets[0])
    for ds in datasets[1:]:
        found = found | deid.identifiers_of(ds)
    return found


# -- tests ---------------------------------------------------------------------------------


async def test_a_shared_study_is_stored_de_identified_for_the_provider_and_audited(
    sharing: Sharing,
) -> None:
    response = await sharing.share()

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["instances"] == 5
    assert body["provider_id"] == sharing.provider.id
    assert body["identification"] == "pseudonymised"
    assert body["shared_study_uid"] != sharing.archive.study_a
    assert await sharing.shared_studies() == [body["shared_study_uid"]]
    referral = await sharing.referral()
    alias = privacy.pseudonym(
        sharing.platform.settings.pseudonym_secret.encode(),
        referral.agreement_id or 0,
        referral.patient_id,
    )
    async with shared_copies(sharing.platform) as store:
        (summary,) = await store.studies()
        files = [data async for data in store.study_files(summary.study_uid)]
    assert summary.patient_id == alias
    identifiers = original_identifiers(sharing.archive.of_study(sharing.archive.study_a))
    for data in files:
        deid.check(pydicom.dcmread(io.BytesIO(data)), identifiers)
    (event,) = await sharing.audit("imaging.share")
    assert (event.outcome, event.counterpart_id) == ("allowed", sharing.provider.id)


async def test_sharing_the_same_study_twice_returns_the_same_share(sharing: Sharing) -> None:
    first = await sharing.share()
    second = await sharing.share()

    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["shared_study_uid"] == first.json()["shared_study_uid"]


async def test_a_revoked_study_shared_again_gets_the_same_uids(sharing: Sharing) -> None:
    first = (await sharing.share()).json()
    revoked = await sharing.client.post(
        f"/api/imaging/shares/{first['id']}/revoke", headers=sharing.h(sharing.referrer)
    )
    again = await sharing.share()

    assert revoked.json()["status"] == "revoked"
    assert again.status_code == 201
    assert again.json()["id"] != first["id"]
    assert again.json()["shared_study_uid"] == first["shared_study_uid"]


async def test_the_provider_sees_the_share_without_the_original_uid_and_a_third_sees_nothing(
    sharing: Sharing,
) -> None:
    made = (await sharing.share()).json()

    as_origin = await sharing.client.get("/api/imaging/shares", headers=sharing.h(sharing.referrer))
    as_provider = await sharing.client.get(
        f"/api/imaging/shares/{made['id']}", headers=sharing.h(sharing.provider_radiologist)
    )
    as_third = await sharing.client.get(
        f"/api/imaging/shares/{made['id']}", headers=sharing.h(sharing.stranger)
    )
    third_list = await sharing.client.get(
        "/api/imaging/shares", headers=sharing.h(sharing.stranger)
    )

    assert [item["study_uid"] for item in as_origin.json()["items"]] == [sharing.archive.study_a]
    assert as_origin.json()["pagination"]["total_count"] == 1
    assert as_provider.status_code == 200
    assert as_provider.json()["study_uid"] is None
    assert as_third.status_code == 404
    assert third_list.json()["items"] == []


async def test_only_the_origin_revokes_and_the_copy_leaves_the_shared_store(
    sharing: Sharing,
) -> None:
    made = (await sharing.share()).json()
    url = f"/api/imaging/shares/{made['id']}/revoke"

    by_provider = await sharing.client.post(url, headers=sharing.h(sharing.provider_radiologist))
    by_third = await sharing.client.post(url, headers=sharing.h(sharing.stranger))
    by_origin = await sharing.client.post(url, headers=sharing.h(sharing.referrer))

    assert (by_provider.status_code, by_third.status_code) == (403, 404)
    assert by_provider.json()["rule"] == "origin_only"
    assert by_origin.status_code == 200
    assert by_origin.json()["revoked_at"] is not None
    assert await sharing.shared_studies() == []
    assert [e.outcome for e in await sharing.audit("imaging.share.revoke")] == ["refused", "ok"]


async def test_a_study_missing_from_the_origin_store_is_404(
    factory: Factory, client: httpx.AsyncClient, platform: Platform
) -> None:
    missing = generate_uid()
    sharing = await make_sharing(factory, client, platform)
    async with platform.database.transaction() as session:
        row = await session.get(Referral, sharing.referral_id)
        assert row is not None
        row.study_uids = [*row.study_uids, missing]

    response = await sharing.share(missing)

    assert response.status_code == 404


async def test_a_stranger_cannot_share_a_referral_it_does_not_hold(sharing: Sharing) -> None:
    response = await sharing.share(user=sharing.stranger)

    assert response.status_code == 404
    assert await sharing.shared_studies() == []


async def test_an_ultrasound_that_may_carry_burned_in_text_blocks_the_share(
    factory: Factory, client: httpx.AsyncClient, platform: Platform
) -> None:
    us = ultrasound_without_burned_in_flag()
    sharing = await make_sharing(factory, client, platform, extra_files=[us])
    study = str(pydicom.dcmread(io.BytesIO(us)).StudyInstanceUID)

    response = await sharing.share(study)

    assert response.status_code == 422
    assert response.json()["type"] == "urn:jisr:problem:share-blocked"
    assert response.json()["rule"] == "burned_in"
    assert await sharing.shared_studies() == []
    (event,) = await sharing.audit("imaging.share")
    assert (event.outcome, event.rule) == ("refused", "burned_in")
    listed = await client.get("/api/imaging/shares", headers=sharing.h(sharing.referrer))
    assert [item["status"] for item in listed.json()["items"]] == ["blocked"]


async def test_a_leak_the_engine_cannot_clean_is_caught_by_the_gate(
    factory: Factory,
    client: httpx.AsyncClient,
    platform: Platform,
) -> None:
    planted = with_name_in_private_tag()
    # A line that (wrongly) calls the private tag safe: the engine keeps it as it is.
    unsafe = {"safe_private_tags": [{"creator": "JISR_TEST", "group": 0x0009, "element": 0x10}]}
    sharing = await make_sharing(
        factory, client, platform, extra_files=[planted], imaging_terms=unsafe
    )
    study = str(pydicom.dcmread(io.BytesIO(planted)).StudyInstanceUID)

    response = await sharing.share(study)

    assert response.status_code == 422
    assert response.json()["rule"] == "leak_detected"
    assert "Doe" not in response.text
    assert await sharing.shared_studies() == []
    (event,) = await sharing.audit("imaging.share")
    assert (event.outcome, event.rule) == ("refused", "leak_detected")


async def test_without_an_imaging_review_line_the_share_is_refused_with_the_rule(
    factory: Factory, client: httpx.AsyncClient, platform: Platform
) -> None:
    sharing = await make_sharing(factory, client, platform, imaging_line=False)

    response = await sharing.share()

    assert response.status_code == 403
    assert response.json()["type"] == "urn:jisr:problem:entitlement-refused"
    assert response.json()["rule"]
    assert response.json()["reasons"]
    assert await sharing.shared_studies() == []
    (event,) = await sharing.audit("imaging.share")
    assert (event.outcome, event.rule) == ("refused", response.json()["rule"])


async def test_a_provider_cannot_share_the_origins_study(sharing: Sharing) -> None:
    response = await sharing.share(user=sharing.provider_radiologist)

    assert response.status_code == 404
