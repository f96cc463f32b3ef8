"""WADO-RS through nginx: the service checks the caller, nginx sends the shared Orthanc's bytes.

A real nginx rendered from the topology's template (`JISR_IMAGING_ACCEL_REDIRECT`
on) in front of the whole app and a real Orthanc as the shared store. Two
origins share a study each with their own provider, as in
`test_wado_passthrough.py`: each provider reads its own study byte for byte,
and nothing else reaches anyone, neither by asking nginx's internal location
nor by forging the headers the redirect is made of.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from requests import HTTPError

from jisr.topology import configs
from services.imaging.dicomweb import accel
from shared.settings import Settings
from tests.imaging.conftest import OrthancServer
from tests.imaging.proxy import running_nginx
from tests.imaging.test_dicomweb_out import serving
from tests.imaging.test_wado_passthrough import (
    ACCEPT,
    TwoShares,
    dicom_parts,
    read_a_series_and_an_instance,
    shared_orthanc_settings,
    stored_files,
    two,
)

__all__ = ["two"]  # the fixture, shared with the streaming path's tests


@pytest.fixture
def settings(
    tmp_path: Path, signing_key: Path, sqlite_url: str, orthanc: OrthancServer
) -> Settings:
    """The shared store is the module's Orthanc, and WADO-RS is redirected to nginx's location."""
    return shared_orthanc_settings(
        tmp_path, signing_key, sqlite_url, orthanc, imaging_accel_redirect=configs.ACCEL_REDIRECT
    )


def nginx_env(orthanc: OrthancServer, password: str | None = None) -> dict[str, str]:
    """The services' environment nginx is rendered for: WADO-RS sent from `orthanc`."""
    return configs.shared_orthanc_env(orthanc.url, orthanc.username, password or orthanc.password)


class Redirecting(BaseHTTPRequestHandler):
    """A service that is not imaging, answering an X-Accel-Redirect to the shared store."""

    target = ""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("X-Accel-Redirect", self.target)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        return


@dataclass
class Proxied:
    url: str
    app_url: str
    other: type[Redirecting]


@pytest.fixture
def proxied(
    two: TwoShares, settings: Settings, orthanc: OrthancServer, tmp_path: Path
) -> Iterator[Proxied]:
    """nginx in front of the app (imaging) and of a redirecting stand-in for the others."""
    handler = type("Other", (Redirecting,), {})
    other = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=other.serve_forever, daemon=True)
    thread.start()
    try:
        with serving(settings) as app_url:
            app = app_url.removeprefix("http://")
            stand_in = f"127.0.0.1:{other.server_address[1]}"
            upstreams = {"imaging": app, "referral": stand_in, "teleconsult": stand_in}
            with running_nginx(tmp_path / "nginx", upstreams, nginx_env(orthanc)) as url:
                yield Proxied(url, app_url, handler)
    finally:
        other.shutdown()
        other.server_close()


def token_headers(two: TwoShares, which: str = "provider_radiologist") -> dict[str, str]:
    s = two.mine
    return {"Authorization": f"Bearer {s.factory.token(getattr(s, which))}", **ACCEPT}


async def orthanc_direct(orthanc: OrthancServer, study: str) -> httpx.Response:
    async with httpx.AsyncClient(auth=(orthanc.username, orthanc.password)) as client:
        return await client.get(
            f"{orthanc.url}/dicom-web/studies/{study}",
            headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
        )


def assert_no_dicom(response: httpx.Response, orthanc: OrthancServer) -> None:
    assert b"DICM" not in response.content
    assert "multipart" not in response.headers.get("content-type", "")
    assert orthanc.password not in str(response.headers) + response.text


def problem_404(response: httpx.Response, path: str, detail: str) -> None:
    """The body the service answers without nginx (problems.problem_response)."""
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body == {
        "type": "urn:jisr:problem:not-found",
        "title": body["title"],
        "status": 404,
        "instance": path,
        "request_id": response.headers["x-request-id"],
        "detail": detail,
    }
    assert body["title"]


def accesses(caplog: pytest.LogCaptureFixture) -> list[tuple[str, int]]:
    """The service's access log lines (shared.logs): (path, status)."""
    return [
        (getattr(r, "path", ""), getattr(r, "status", 0))
        for r in caplog.records
        if r.name == "jisr.access"
    ]


async def test_the_entitled_radiologist_gets_the_study_as_orthanc_has_it(
    two: TwoShares, proxied: Proxied, orthanc: OrthancServer, caplog: pytest.LogCaptureFixture
) -> None:
    path = f"/dicomweb/studies/{two.my_study}"
    with caplog.at_level(logging.INFO, logger="jisr.access"):
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{proxied.url}{path}", headers=token_headers(two))
    direct = await orthanc_direct(orthanc, two.my_study)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(
        'multipart/related; type="application/dicom"'
    )
    files = dicom_parts(response)
    assert len(files) == 5
    assert sorted(files) == sorted(dicom_parts(direct))
    assert sorted(files) == sorted(await stored_files(two.mine.platform, two.my_study))
    assert all(pydicom.dcmread(io.BytesIO(f)).StudyInstanceUID == two.my_study for f in files)
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-request-id"]
    assert "www-authenticate" not in response.headers
    assert orthanc.password not in str(response.headers)
    assert accesses(caplog) == [(path, 200)]  # logged by the service, as without nginx


async def test_a_series_and_an_instance_come_through_nginx_alone(
    two: TwoShares, proxied: Proxied
) -> None:
    async with httpx.AsyncClient(base_url=proxied.url) as client:
        await read_a_series_and_an_instance(client, two, token_headers(two))


async def test_a_third_institution_and_another_provider_get_404_and_no_bytes(
    two: TwoShares, proxied: Proxied, orthanc: OrthancServer, caplog: pytest.LogCaptureFixture
) -> None:
    mine = f"/dicomweb/studies/{two.my_study}"
    theirs = f"/dicomweb/studies/{two.their_study}"
    missing = "/dicomweb/studies/1.2.826.0.1.3680043.8.498.1"
    with caplog.at_level(logging.INFO, logger="jisr.access"):
        async with httpx.AsyncClient(base_url=proxied.url) as client:
            stranger = await client.get(mine, headers=token_headers(two, "stranger"))
            other_provider = await client.get(theirs, headers=token_headers(two))
            nothing = await client.get(missing, headers=token_headers(two))

    for response, path in ((stranger, mine), (other_provider, theirs), (nothing, missing)):
        problem_404(response, path, "no such study")
        assert_no_dicom(response, orthanc)
    assert accesses(caplog) == [(mine, 404), (theirs, 404), (missing, 404)]


async def test_a_series_or_instance_outside_the_study_is_the_same_404_as_without_nginx(
    two: TwoShares, proxied: Proxied, orthanc: OrthancServer
) -> None:
    their_first = pydicom.dcmread(
        io.BytesIO((await stored_files(two.mine.platform, two.their_study))[0])
    )
    series = f"/dicomweb/studies/{two.my_study}/series/{their_first.SeriesInstanceUID}"
    instance = f"{series}/instances/{their_first.SOPInstanceUID}"
    malformed = f"/dicomweb/studies/{two.my_study}/series/..%2E/instances/x"
    async with httpx.AsyncClient(base_url=proxied.url) as client:
        by_series = await client.get(series, headers=token_headers(two))
        by_instance = await client.get(instance, headers=token_headers(two))
        by_stranger = await client.get(series, headers=token_headers(two, "stranger"))
        odd = await client.get(malformed, headers=token_headers(two))

    problem_404(by_series, series, accel.NOT_IN_STORE)
    problem_404(by_instance, instance, accel.NOT_IN_STORE)
    problem_404(by_stranger, series, "no such study")
    assert odd.status_code == 404
    for response in (by_series, by_instance, by_stranger, odd):
        assert_no_dicom(response, orthanc)


async def test_the_internal_location_and_forged_headers_give_nothing(
    two: TwoShares, proxied: Proxied, orthanc: OrthancServer
) -> None:
    internal = f"{configs.ACCEL_REDIRECT}studies/{two.their_study}"
    proxied.other.target = internal
    forged = {
        "X-Accel-Redirect": internal,
        "X-Jisr-Store-Status": "200",
        "Authorization": f"Bearer {two.mine.factory.token(two.mine.provider_radiologist)}",
        **ACCEPT,
    }
    async with httpx.AsyncClient(base_url=proxied.url) as client:
        asked = await client.get(internal, headers=forged)
        as_header = await client.get(f"/dicomweb/studies/{two.their_study}", headers=forged)
        # Another service (not imaging) answering a redirect: nginx sends its answer as is.
        from_other = await client.get("/api/referrals", headers=forged)
        # The store-status header of nginx's callback, sent by a client, is dropped.
        mine = await client.get(f"/dicomweb/studies/{two.my_study}", headers=forged)

    assert asked.status_code == 404
    assert as_header.status_code == 404
    assert from_other.status_code == 200
    assert from_other.content == b"ok"
    for response in (asked, as_header, from_other):
        assert_no_dicom(response, orthanc)
    assert mine.status_code == 200
    assert len(dicom_parts(mine)) == 5


async def test_the_service_alone_answers_the_redirect_without_credentials(
    two: TwoShares, proxied: Proxied, orthanc: OrthancServer
) -> None:
    async with httpx.AsyncClient(base_url=proxied.app_url) as client:
        response = await client.get(f"/dicomweb/studies/{two.my_study}", headers=token_headers(two))
        refused = await client.get(
            f"/dicomweb/studies/{two.my_study}", headers=token_headers(two, "stranger")
        )

    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["x-accel-redirect"] == (
        f"{configs.ACCEL_REDIRECT}studies/{two.my_study}"
    )
    assert orthanc.password not in str(response.headers)
    assert orthanc.username + ":" not in str(response.headers)
    assert "x-accel-redirect" not in refused.headers
    assert refused.status_code == 404


async def test_unacceptable_media_types_get_406_through_nginx(
    two: TwoShares, proxied: Proxied
) -> None:
    headers = {**token_headers(two), "Accept": "application/json"}
    async with httpx.AsyncClient(base_url=proxied.url) as client:
        response = await client.get(f"/dicomweb/studies/{two.my_study}", headers=headers)

    assert response.status_code == 406
    assert response.headers["content-type"] == "application/problem+json"


async def test_dicomweb_client_reads_the_study_through_nginx(
    two: TwoShares, proxied: Proxied
) -> None:
    token = two.mine.factory.token(two.mine.provider_radiologist)
    viewer = DICOMwebClient(
        url=f"{proxied.url}/dicomweb", headers={"Authorization": f"Bearer {token}"}
    )
    datasets = await asyncio.to_thread(viewer.retrieve_study, two.my_study)
    with pytest.raises(HTTPError) as refused:
        await asyncio.to_thread(viewer.retrieve_study, two.their_study)

    assert sorted(ds.SOPInstanceUID for ds in datasets) == sorted(
        pydicom.dcmread(io.BytesIO(d)).SOPInstanceUID
        for d in await stored_files(two.mine.platform, two.my_study)
    )
    assert refused.value.response is not None
    assert refused.value.response.status_code == 404


async def test_orthanc_refusing_nginx_is_the_services_problem_not_orthancs_challenge(
    two: TwoShares, settings: Settings, orthanc: OrthancServer, tmp_path: Path
) -> None:
    with serving(settings) as app_url:
        upstreams = dict.fromkeys(("referral", "imaging", "teleconsult"), app_url[7:])
        wrong = nginx_env(orthanc, password="not-the-password")
        with running_nginx(tmp_path / "nginx", upstreams, wrong) as url:
            async with httpx.AsyncClient(base_url=url) as client:
                response = await client.get(
                    f"/dicomweb/studies/{two.my_study}", headers=token_headers(two)
                )

    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["request_id"] == response.headers["x-request-id"]
    # Not Orthanc's 401: a browser would prompt for Basic credentials. (nginx copies an
    # intercepted 401's WWW-Authenticate onto whatever answers instead; on a 500 nothing
    # prompts, and only a proxy holding wrong credentials gets there.)
    assert "orthanc" not in response.text.lower()
    assert_no_dicom(response, orthanc)
