"""Every QIDO-RS resource of PS3.18 Table 10.6.1-2, read by `dicomweb-client`, on both stores.

Study A (a CT series of three images, an MR series of two) is shared with the
provider through the shared store: files on disk, or a real Orthanc. The
provider finds it through each resource; a third institution finds nothing
(an empty list over all studies, 404 for the study); the original UID is 404.
An invalid query is 400 problem+json naming the parameter, for anyone; the
queries OHIF sends keep working.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import ValidationError
from requests import HTTPError

from services.imaging.locations import shared_copies
from services.imaging.stores import OrthancStore
from shared.platform import Platform
from shared.settings import Settings
from tests.imaging.conftest import OrthancServer, empty
from tests.imaging.test_dicomweb_out import base_url, shared, shared_uid, status, viewer
from tests.imaging.test_shares import Sharing

__all__ = ["base_url", "shared"]  # the fixtures, imported so pytest finds them here


@pytest.fixture(params=["files", "orthanc"], autouse=True)
async def shared_store(request: pytest.FixtureRequest, platform: Platform) -> str:
    """Every test on both shared stores: set before `shared` shares study A into it."""
    if request.param == "orthanc":
        orthanc: OrthancServer = request.getfixturevalue("orthanc")
        await empty(orthanc)
        platform.settings.shared_store_url = orthanc.url
        platform.settings.shared_store_username = orthanc.username
        platform.settings.shared_store_password = orthanc.password
    return str(request.param)


def uids(items: list[dict[str, Any]], tag: str) -> list[str]:
    return [str(item[tag]["Value"][0]) for item in items]


async def test_the_provider_finds_the_studys_instances_through_every_resource(
    shared: Sharing, base_url: str, shared_store: str
) -> None:
    client = viewer(base_url, shared, "provider_radiologist")
    uid = await shared_uid(shared)
    async with shared_copies(shared.platform) as store:
        assert isinstance(store, OrthancStore) == (shared_store == "orthanc")

    of_study = await asyncio.to_thread(client.search_for_instances, study_instance_uid=uid)
    mr_of_study = await asyncio.to_thread(
        client.search_for_instances, study_instance_uid=uid, search_filters={"Modality": "MR"}
    )
    all_series = await asyncio.to_thread(client.search_for_series)
    all_instances = await asyncio.to_thread(client.search_for_instances)
    paged = await asyncio.to_thread(client.search_for_instances, limit=2, offset=1)
    mr = next(s for s in all_series if s["00080060"]["Value"] == ["MR"])
    of_series = await asyncio.to_thread(
        client.search_for_instances,
        study_instance_uid=uid,
        series_instance_uid=uids([mr], "0020000E")[0],
    )

    assert len(of_study) == 5
    assert set(uids(of_study, "0020000D")) == {uid}
    assert sorted(uids(mr_of_study, "00080018")) == sorted(uids(of_series, "00080018"))
    assert len(mr_of_study) == 2
    assert sorted(s["00080060"]["Value"][0] for s in all_series) == ["CT", "MR"]
    assert set(uids(all_series, "0020000D")) == {uid}
    assert uids(all_instances, "00080018") == uids(of_study, "00080018")
    assert uids(paged, "00080018") == uids(of_study, "00080018")[1:3]
    for item in of_study:  # dicomweb-client sends Host without the port: compare paths only
        path = urlsplit(item["00081190"]["Value"][0]).path
        assert path.startswith(f"/dicomweb/studies/{uid}/series/")


async def test_a_third_institution_finds_nothing_through_any_resource(
    shared: Sharing, base_url: str
) -> None:
    client = viewer(base_url, shared, "stranger")
    uid = await shared_uid(shared)

    all_series = await asyncio.to_thread(client.search_for_series)
    all_instances = await asyncio.to_thread(client.search_for_instances)
    by_uid = await asyncio.to_thread(
        client.search_for_instances, search_filters={"StudyInstanceUID": uid}
    )
    with pytest.raises(HTTPError) as of_study:
        await asyncio.to_thread(client.search_for_instances, study_instance_uid=uid)

    assert all_series == [] and all_instances == [] and by_uid == []
    assert status(of_study.value) == 404


async def test_the_original_study_uid_has_no_instances_for_the_provider(
    shared: Sharing, base_url: str
) -> None:
    client = viewer(base_url, shared, "provider_radiologist")

    with pytest.raises(HTTPError) as raised:
        await asyncio.to_thread(
            client.search_for_instances, study_instance_uid=shared.archive.study_a
        )
    found = await asyncio.to_thread(
        client.search_for_instances, search_filters={"StudyInstanceUID": shared.archive.study_a}
    )

    assert status(raised.value) == 404
    assert found == []


async def test_the_new_resources_refuse_a_caller_without_a_token(
    shared: Sharing, base_url: str
) -> None:
    uid = await shared_uid(shared)
    async with httpx.AsyncClient(base_url=f"{base_url}/dicomweb") as anonymous:
        answers = [
            await anonymous.get(path)
            for path in ("/series", "/instances", f"/studies/{uid}/instances")
        ]
    assert [a.status_code for a in answers] == [401, 401, 401]


# Invalid queries (PS3.18 §8.3.4, §10.6.3) and what viewers send ----------------------------


@pytest.mark.parametrize(
    ("path", "query", "parameter"),
    [
        ("/studies", "StudyDate=2024-13-45", "StudyDate"),
        ("/studies", "StudyDate=banana", "StudyDate"),
        ("/studies", "StudyDate=20241345", "StudyDate"),
        ("/studies", "00080020=20240230-", "00080020"),
        ("/studies", "PatientSize=1.8", "PatientSize"),
        ("/studies", "ReferringPhysicianName=Smith", "ReferringPhysicianName"),
        ("/studies", "Banana=", "Banana"),
        ("/studies", "Banana=1", "Banana"),
        ("/studies", "Modality=CT", "Modality"),  # a series key, not a study one
        ("/studies", "StudyInstanceUID=not-a-uid", "StudyInstanceUID"),
        ("/studies", "PatientID=A&PatientID=B", "PatientID"),
        ("/studies", "limit=-1", "limit"),
        ("/studies", "offset=ten", "offset"),
        ("/studies", "fuzzymatching=maybe", "fuzzymatching"),
        ("/studies", "includefield=NoSuchAttribute", "includefield"),
        ("/series", "StudyDate=banana", "StudyDate"),
        ("/series", "SeriesNumber=one", "SeriesNumber"),
        ("/instances", "SOPClassUID=x", "SOPClassUID"),
        ("/studies/{uid}/series", "PatientName=Doe", "PatientName"),
        ("/studies/{uid}/instances", "StudyDate=banana", "StudyDate"),
        ("/studies/{uid}/instances", "InstanceNumber=1.5", "InstanceNumber"),
    ],
)
async def test_an_invalid_query_is_400_naming_the_parameter_for_anyone(
    shared: Sharing, path: str, query: str, parameter: str
) -> None:
    uid = await shared_uid(shared)
    url = f"/dicomweb{path.format(uid=uid)}?{query}"

    answers = [
        await shared.client.get(url, headers=shared.h(user))
        for user in (shared.provider_radiologist, shared.stranger)
    ]

    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["parameter"] == parameter
        assert parameter in answer.json()["detail"]


async def test_the_queries_ohif_sends_keep_working_and_find_only_whats_shared(
    shared: Sharing,
) -> None:
    uid = await shared_uid(shared)
    ohif = (
        "PatientName=*&00100020=*&StudyDescription=*&limit=101&offset=0"
        "&fuzzymatching=false&includefield=00081030%2C00080060&StudyDate=19000101-20991231"
    )
    queries = {
        "worklist": f"/dicomweb/studies?{ohif}",
        "by_uid_list": f"/dicomweb/studies?StudyInstanceUID={uid}%5C1.2.3.4&includefield=all",
        "by_modalities": "/dicomweb/studies?ModalitiesInStudy=MR%5CUS&StudyDate=-20991231",
        "series": f"/dicomweb/studies/{uid}/series?includefield=0008103E,SeriesNumber",
        "instances": f"/dicomweb/studies/{uid}/instances?includefield=00080016&limit=101",
        "empty_values": "/dicomweb/studies?PatientName=&AccessionNumber=&limit=",
        "return_keys": "/dicomweb/studies?00100030=&ReferringPhysicianName=&00080060",
        "comma_list": f"/dicomweb/studies?0020000D=1.2.3,{uid}&ModalitiesInStudy=US,MR",
    }
    provider = shared.h(shared.provider_radiologist)
    stranger = shared.h(shared.stranger)

    found = {name: await shared.client.get(url, headers=provider) for name, url in queries.items()}
    fuzzy = await shared.client.get(
        "/dicomweb/studies?fuzzymatching=true&PatientName=*", headers=provider
    )
    theirs = await shared.client.get(queries["worklist"], headers=stranger)

    assert {name: a.status_code for name, a in found.items()} == dict.fromkeys(queries, 200)
    assert uids(found["worklist"].json(), "0020000D") == [uid]
    assert uids(found["by_uid_list"].json(), "0020000D") == [uid]
    assert uids(found["by_modalities"].json(), "0020000D") == [uid]
    assert len(found["series"].json()) == 2
    assert len(found["instances"].json()) == 5
    assert uids(found["empty_values"].json(), "0020000D") == [uid]
    assert uids(found["return_keys"].json(), "0020000D") == [uid]
    assert uids(found["comma_list"].json(), "0020000D") == [uid]
    assert fuzzy.status_code == 200 and len(fuzzy.json()) == 1
    assert "fuzzymatching" in fuzzy.headers["warning"]
    assert theirs.status_code == 200 and theirs.json() == []


async def test_a_study_date_range_and_a_modality_that_miss_find_nothing(
    shared: Sharing,
) -> None:
    provider = shared.h(shared.provider_radiologist)

    before = await shared.client.get(
        "/dicomweb/studies?StudyDate=19000101-19000102", headers=provider
    )
    no_us = await shared.client.get("/dicomweb/series?Modality=US", headers=provider)

    assert before.status_code == 200 and before.json() == []
    assert no_us.status_code == 200 and no_us.json() == []


async def test_retrieve_urls_carry_the_public_url_when_one_is_set(
    shared: Sharing, base_url: str
) -> None:
    """dicomweb-client sends Host without the port; JISR_PUBLIC_URL puts it back."""
    shared.platform.settings.public_url = base_url
    uid = await shared_uid(shared)

    found = await asyncio.to_thread(
        viewer(base_url, shared, "provider_radiologist").search_for_instances,
        study_instance_uid=uid,
    )
    with pytest.raises(HTTPError) as stranger:
        await asyncio.to_thread(
            viewer(base_url, shared, "stranger").search_for_instances, study_instance_uid=uid
        )

    assert len(found) == 5
    for item in found:
        assert item["00081190"]["Value"][0].startswith(f"{base_url}/dicomweb/studies/{uid}/series/")
    assert status(stranger.value) == 404
    for wrong in ("jisr.example.org", "https://jisr.example.org/path", "ftp://jisr.example.org"):
        with pytest.raises(ValidationError):
            Settings(public_url=wrong)
