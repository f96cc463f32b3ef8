"""The partner-facing DICOMweb, read by `dicomweb-client` as a viewer would, over real HTTP.

The app is served by uvicorn on a free loopback port in a thread of its own,
with its own platform (same database file, data folder and signing key).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pydicom
import pytest
import uvicorn
from dicomweb_client.api import DICOMwebClient
from requests import HTTPError

from jisr.app import create_app
from services.imaging import deid
from services.referral import privacy
from shared.platform import Platform
from shared.settings import Settings
from tests.factories import Factory
from tests.imaging.test_shares import Sharing, make_sharing, original_identifiers


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """The whole app on a loopback port; the socket listens before the thread starts."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    platform = Platform.from_settings(settings)
    config = uvicorn.Config(
        create_app(platform), lifespan="off", log_level="warning", ws="none", access_log=False
    )
    server = uvicorn.Server(config)

    async def run() -> None:
        try:
            await server.serve(sockets=[sock])
        finally:
            await platform.database.dispose()

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture
async def shared(factory: Factory, client: httpx.AsyncClient, platform: Platform) -> Sharing:
    sharing = await make_sharing(factory, client, platform)
    response = await sharing.share()
    assert response.status_code == 201, response.text
    return sharing


@pytest.fixture
def base_url(settings: Settings, shared: Sharing) -> Iterator[str]:
    with serving(settings) as url:
        yield url


def viewer(base_url: str, sharing: Sharing, user_attr: str) -> DICOMwebClient:
    token = sharing.factory.token(getattr(sharing, user_attr))
    return DICOMwebClient(url=f"{base_url}/dicomweb", headers={"Authorization": f"Bearer {token}"})


def status(error: HTTPError) -> int:
    assert error.response is not None
    return int(error.response.status_code)


async def shared_uid(sharing: Sharing) -> str:
    (uid,) = await sharing.shared_studies()
    return uid


async def test_the_provider_finds_only_the_shared_study_under_its_pseudonym(
    shared: Sharing, base_url: str
) -> None:
    referral = await shared.referral()
    alias = privacy.pseudonym(
        shared.platform.settings.pseudonym_secret.encode(),
        referral.agreement_id or 0,
        referral.patient_id,
    )
    client = viewer(base_url, shared, "provider_radiologist")

    studies = await asyncio.to_thread(client.search_for_studies)

    (study,) = studies
    assert study["0020000D"]["Value"] == [await shared_uid(shared)]
    assert study["0020000D"]["Value"] != [shared.archive.study_a]
    assert study["00100010"]["Value"] == [{"Alphabetic": alias}]
    assert study["00100020"]["Value"] == [alias]
    assert study["00201208"]["Value"] == [5]


async def test_qido_filters_and_pages_within_what_is_shared(shared: Sharing, base_url: str) -> None:
    client = viewer(base_url, shared, "provider_radiologist")
    uid = await shared_uid(shared)

    by_modality = await asyncio.to_thread(
        client.search_for_studies, search_filters={"ModalitiesInStudy": "MR"}
    )
    by_other_id = await asyncio.to_thread(
        client.search_for_studies, search_filters={"PatientID": "JISR-0001"}
    )
    paged_out = await asyncio.to_thread(client.search_for_studies, offset=1)
    series = await asyncio.to_thread(client.search_for_series, study_instance_uid=uid)
    mr = next(s for s in series if s["00080060"]["Value"] == ["MR"])
    instances = await asyncio.to_thread(
        client.search_for_instances,
        study_instance_uid=uid,
        series_instance_uid=mr["0020000E"]["Value"][0],
    )

    assert len(by_modality) == 1
    assert by_other_id == []
    assert paged_out == []
    assert sorted(s["00080060"]["Value"][0] for s in series) == ["CT", "MR"]
    assert len(instances) == 2


async def test_retrieved_instances_carry_none_of_the_original_identifiers(
    shared: Sharing, base_url: str
) -> None:
    client = viewer(base_url, shared, "provider_radiologist")
    uid = await shared_uid(shared)
    identifiers = original_identifiers(shared.archive.of_study(shared.archive.study_a))

    datasets = await asyncio.to_thread(client.retrieve_study, uid)
    metadata = await asyncio.to_thread(client.retrieve_study_metadata, uid)
    first = datasets[0]
    one = await asyncio.to_thread(
        client.retrieve_instance, uid, str(first.SeriesInstanceUID), str(first.SOPInstanceUID)
    )

    assert len(datasets) == 5
    assert len(metadata) == 5
    for ds in datasets:
        deid.check(ds, identifiers)
        assert ds.StudyInstanceUID == uid
    assert one.SOPInstanceUID == first.SOPInstanceUID
    for item in metadata:
        deid.check(pydicom.Dataset.from_json(item), identifiers)


async def test_the_original_study_uid_is_not_found(shared: Sharing, base_url: str) -> None:
    client = viewer(base_url, shared, "provider_radiologist")

    with pytest.raises(HTTPError) as raised:
        await asyncio.to_thread(client.retrieve_study_metadata, shared.archive.study_a)

    assert status(raised.value) == 404
    found = await asyncio.to_thread(
        client.search_for_studies, search_filters={"StudyInstanceUID": shared.archive.study_a}
    )
    assert found == []


async def test_a_third_institution_sees_no_study_and_gets_404(
    shared: Sharing, base_url: str
) -> None:
    client = viewer(base_url, shared, "stranger")
    uid = await shared_uid(shared)

    studies = await asyncio.to_thread(client.search_for_studies)
    with pytest.raises(HTTPError) as raised:
        await asyncio.to_thread(client.retrieve_study, uid)
    with pytest.raises(HTTPError) as series:
        await asyncio.to_thread(client.search_for_series, study_instance_uid=uid)

    assert studies == []
    assert status(raised.value) == 404
    assert status(series.value) == 404


async def test_after_the_origin_revokes_the_provider_sees_nothing(
    shared: Sharing, base_url: str
) -> None:
    client = viewer(base_url, shared, "provider_radiologist")
    uid = await shared_uid(shared)
    (share,) = (
        await shared.client.get("/api/imaging/shares", headers=shared.h(shared.referrer))
    ).json()["items"]

    revoked = await shared.client.post(
        f"/api/imaging/shares/{share['id']}/revoke", headers=shared.h(shared.referrer)
    )
    studies = await asyncio.to_thread(client.search_for_studies)
    with pytest.raises(HTTPError) as raised:
        await asyncio.to_thread(client.retrieve_study, uid)

    assert revoked.status_code == 200
    assert studies == []
    assert status(raised.value) == 404


async def test_dicomweb_without_a_token_is_refused(shared: Sharing, base_url: str) -> None:
    client = DICOMwebClient(url=f"{base_url}/dicomweb")

    with pytest.raises(HTTPError) as raised:
        await asyncio.to_thread(client.search_for_studies)

    assert status(raised.value) == 401
