"""A coverage line's imaging terms decide how a shared study is de-identified, or not at all."""

from __future__ import annotations

import io
from datetime import date

import httpx
import pydicom

from services.imaging.locations import shared_copies
from shared.identity.models import Role
from shared.platform import Platform
from tests.factories import Factory
from tests.imaging.test_shares import make_sharing, ultrasound_without_burned_in_flag


async def shared_datasets(platform: Platform, study_uid: str) -> list[pydicom.Dataset]:
    async with shared_copies(platform) as store:
        return [pydicom.dcmread(io.BytesIO(data)) async for data in store.study_files(study_uid)]


async def test_an_identified_line_shares_the_originals_apart_from_them(
    factory: Factory, client: httpx.AsyncClient, platform: Platform
) -> None:
    sharing = await make_sharing(factory, client, platform, identification="identified")
    response = await sharing.share()
    assert response.status_code == 201, response.text
    assert response.json()["identification"] == "identified"
    (study,) = await sharing.shared_studies()
    assert study == sharing.archive.study_a  # nothing remapped: the line allows identity
    names = {str(ds.PatientName) for ds in await shared_datasets(platform, study)}
    assert names == {"Doe^Jane"}


async def test_a_line_that_allows_burned_in_text_lets_an_ultrasound_through(
    factory: Factory, client: httpx.AsyncClient, platform: Platform
) -> None:
    us = ultrasound_without_burned_in_flag()
    sharing = await make_sharing(
        factory, client, platform, extra_files=[us], imaging_terms={"allow_burned_in": True}
    )
    response = await sharing.share(str(pydicom.dcmread(io.BytesIO(us)).StudyInstanceUID))
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "ready"


async def test_a_line_may_keep_device_identity_and_drop_the_shifted_dates(
    factory: Factory, client: httpx.AsyncClient, platform: Platform
) -> None:
    terms = {"retain_device_identity": True, "retain_dates_shifted": False}
    sharing = await make_sharing(factory, client, platform, imaging_terms=terms)
    response = await sharing.share()
    assert response.status_code == 201, response.text
    datasets = await shared_datasets(platform, (await sharing.shared_studies())[0])
    methods = {
        str(item.CodeValue) for ds in datasets for item in ds.DeidentificationMethodCodeSequence
    }
    assert "113109" in methods and "113107" not in methods  # device identity kept, no dates
    assert all(not ds.get("StudyDate") for ds in datasets)


async def test_imaging_terms_are_part_of_the_coverage_api(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    origin, provider = await factory.institution(), await factory.institution()
    coordinator = await factory.user(origin, Role.COORDINATOR)
    agreement = await factory.agreement(origin, provider, valid_from=date(2024, 1, 1), lines=[])
    url = f"/api/agreements/{agreement.id}/coverage"
    line = {
        "service": "imaging_review",
        "data_terms": {"identification": "pseudonymised", "consent_required": True},
        "imaging": {
            "retain_device_identity": True,
            "allow_burned_in": True,
            "safe_private_tags": [{"creator": "GEMS_ACQU_01", "group": 0x0019, "element": 0x23}],
        },
    }
    created = await client.post(url, json=line, headers=factory.headers(coordinator))
    assert created.status_code == 201, created.text
    assert created.json()["imaging"]["safe_private_tags"] == [
        {"creator": "GEMS_ACQU_01", "group": 0x0019, "element": 0x23}
    ]
    even = {
        **line,
        "imaging": {"safe_private_tags": [{"creator": "X", "group": 0x0018, "element": 1}]},
    }
    assert (
        await client.post(url, json=even, headers=factory.headers(coordinator))
    ).status_code == 422
    listed = await client.get(url, headers=factory.headers(coordinator))
    assert listed.json()[0]["imaging"]["allow_burned_in"] is True
