"""WADO-RS from a shared store on Orthanc: its own multipart answer, passed on to entitled callers.

The shared Orthanc holds the de-identified copies of every partner. Two
origins share a study each with their own provider into the same Orthanc: each
provider reads its own study byte for byte, and nothing of the other's, nor a
study the store holds that nobody shared, nor anything through a study of its
own with a series or instance of another.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from requests import HTTPError

from services.imaging import deid
from services.imaging.locations import shared_copies
from shared.platform import Platform
from shared.settings import Settings
from tests.conftest import make_settings
from tests.factories import Factory
from tests.imaging.conftest import OrthancServer, empty
from tests.imaging.factories import Archive
from tests.imaging.test_dicomweb_out import serving
from tests.imaging.test_shares import Sharing, make_sharing, original_identifiers
from tests.imaging.test_stores import multipart_files

ACCEPT = {"Accept": 'multipart/related; type="application/dicom"'}


def shared_orthanc_settings(
    tmp_path: Path, signing_key: Path, sqlite_url: str, orthanc: OrthancServer, **extra: Any
) -> Settings:
    """A test's settings whose shared store is `orthanc`."""
    return make_settings(
        tmp_path,
        signing_key,
        sqlite_url,
        shared_store_url=orthanc.url,
        shared_store_username=orthanc.username,
        shared_store_password=orthanc.password,
        **extra,
    )


@pytest.fixture
def settings(
    tmp_path: Path, signing_key: Path, sqlite_url: str, orthanc: OrthancServer
) -> Settings:
    """The platform's shared store is the module's Orthanc."""
    return shared_orthanc_settings(tmp_path, signing_key, sqlite_url, orthanc)


@dataclass
class TwoShares:
    mine: Sharing
    theirs: Sharing
    my_study: str
    their_study: str


async def shared_study(sharing: Sharing) -> str:
    response = await sharing.share()
    assert response.status_code == 201, response.text
    return str(response.json()["shared_study_uid"])


@pytest.fixture
async def two(
    factory: Factory, client: httpx.AsyncClient, platform: Platform, orthanc: OrthancServer
) -> AsyncIterator[TwoShares]:
    await empty(orthanc)
    mine = await make_sharing(factory, client, platform)
    theirs = await make_sharing(factory, client, platform)
    yield TwoShares(mine, theirs, await shared_study(mine), await shared_study(theirs))


def dicom_parts(response: httpx.Response) -> list[bytes]:
    return multipart_files(response.headers["content-type"], response.content)


async def stored_files(platform: Platform, study: str) -> list[bytes]:
    async with shared_copies(platform) as store:
        return [data async for data in store.study_files(study)]


async def test_a_provider_reads_its_shared_study_byte_for_byte_from_the_shared_orthanc(
    two: TwoShares,
) -> None:
    s = two.mine
    identifiers = original_identifiers(s.archive.of_study(s.archive.study_a))

    response = await s.client.get(
        f"/dicomweb/studies/{two.my_study}", headers={**s.h(s.provider_radiologist), **ACCEPT}
    )

    assert response.status_code == 200, response.text
    files = dicom_parts(response)
    assert sorted(files) == sorted(await stored_files(s.platform, two.my_study))
    assert len(files) == 5
    for data in files:
        ds = pydicom.dcmread(io.BytesIO(data))
        deid.check(ds, identifiers)
        assert ds.StudyInstanceUID == two.my_study


async def read_a_series_and_an_instance(
    client: httpx.AsyncClient, two: TwoShares, headers: dict[str, str]
) -> None:
    """The first stored file's series, then that file alone, each with only what it holds."""
    first = pydicom.dcmread(io.BytesIO((await stored_files(two.mine.platform, two.my_study))[0]))
    series = f"/dicomweb/studies/{two.my_study}/series/{first.SeriesInstanceUID}"

    whole_series = await client.get(series, headers=headers)
    one = await client.get(f"{series}/instances/{first.SOPInstanceUID}", headers=headers)

    assert whole_series.status_code == 200, whole_series.text
    in_series = [pydicom.dcmread(io.BytesIO(d)) for d in dicom_parts(whole_series)]
    assert {ds.SeriesInstanceUID for ds in in_series} == {first.SeriesInstanceUID}
    assert one.status_code == 200, one.text
    (only,) = dicom_parts(one)
    assert pydicom.dcmread(io.BytesIO(only)).SOPInstanceUID == first.SOPInstanceUID


async def test_a_series_and_an_instance_come_through_alone(two: TwoShares) -> None:
    s = two.mine
    await read_a_series_and_an_instance(s.client, two, {**s.h(s.provider_radiologist), **ACCEPT})


async def test_a_provider_cannot_read_a_study_shared_with_another_provider(
    two: TwoShares,
) -> None:
    s = two.mine
    headers = {**s.h(s.provider_radiologist), **ACCEPT}
    their_first = pydicom.dcmread(io.BytesIO((await stored_files(s.platform, two.their_study))[0]))
    their_series = str(their_first.SeriesInstanceUID)

    whole = await s.client.get(f"/dicomweb/studies/{two.their_study}", headers=headers)
    # Their series and instance asked through my own (entitled) study.
    series = await s.client.get(
        f"/dicomweb/studies/{two.my_study}/series/{their_series}", headers=headers
    )
    instance = await s.client.get(
        f"/dicomweb/studies/{two.my_study}/series/{their_series}"
        f"/instances/{their_first.SOPInstanceUID}",
        headers=headers,
    )
    missing = await s.client.get("/dicomweb/studies/1.2.826.0.1.3680043.8.498.1", headers=headers)
    theirs = await two.theirs.client.get(
        f"/dicomweb/studies/{two.their_study}",
        headers={**two.theirs.h(two.theirs.provider_radiologist), **ACCEPT},
    )

    assert whole.status_code == 404
    assert whole.json()["detail"] == missing.json()["detail"]  # as if it did not exist
    assert series.status_code == 404
    assert instance.status_code == 404
    assert theirs.status_code == 200  # their provider reads it


async def test_a_study_in_the_shared_store_that_nobody_shared_is_not_found(
    two: TwoShares,
) -> None:
    s = two.mine
    stray = Archive()
    async with shared_copies(s.platform) as store:
        for data in stray.of_study(stray.study_a):
            await store.put(data)

    for user in (s.provider_radiologist, s.referrer, s.stranger):
        response = await s.client.get(
            f"/dicomweb/studies/{stray.study_a}", headers={**s.h(user), **ACCEPT}
        )
        assert response.status_code == 404


async def test_a_third_institution_gets_404_for_a_shared_study(two: TwoShares) -> None:
    s = two.mine

    response = await s.client.get(
        f"/dicomweb/studies/{two.my_study}", headers={**s.h(s.stranger), **ACCEPT}
    )

    assert response.status_code == 404


async def test_dicomweb_client_reads_the_passed_through_study_over_http(
    two: TwoShares, settings: Settings
) -> None:
    s = two.mine
    token = s.factory.token(s.provider_radiologist)
    with serving(settings) as url:
        viewer = DICOMwebClient(url=f"{url}/dicomweb", headers={"Authorization": f"Bearer {token}"})
        datasets = await asyncio.to_thread(viewer.retrieve_study, two.my_study)
        with pytest.raises(HTTPError) as refused:
            await asyncio.to_thread(viewer.retrieve_study, two.their_study)

    assert sorted(ds.SOPInstanceUID for ds in datasets) == sorted(
        pydicom.dcmread(io.BytesIO(d)).SOPInstanceUID
        for d in await stored_files(s.platform, two.my_study)
    )
    assert refused.value.response is not None
    assert refused.value.response.status_code == 404
