"""The production topology on this machine (`jisr run-services`), used through its one origin.

Real PostgreSQL and Redis, three Orthancs on the PostgreSQL index (the originals, a
partner's store, the shared copies), coturn, the three services each in its own process,
a Celery worker and beat, nginx in front: a demo user signs in, submits a referral,
stores a study, shares it, the partner reads it through nginx, and the metrics move.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import uuid
from pathlib import Path

import httpx
import pytest
import websockets
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from jisr.topology import OrthancEndpoint, Topology, configs, credentials
from jisr.topology.processes import wait_until
from shared.i18n import translate
from shared.problems import PROBLEM_JSON, RETRY_AFTER_S
from shared.settings import DEV_ADMIN_PASSWORD, Settings
from tests.imaging.test_wado_passthrough import ACCEPT, dicom_parts
from tests.integration.test_health_metrics import sample
from tests.topology import topology  # noqa: F401 - the fixture, used by name

DEMO_PASSWORD = "jisr-demo"


def token(t: Topology, username: str) -> str:
    answer = httpx.post(
        t.proxy_url + "/auth/token", data={"username": username, "password": DEMO_PASSWORD}
    )
    assert answer.status_code == 200, answer.text
    value: str = answer.json()["access_token"]
    return value


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def referral_body() -> dict[str, object]:
    return {
        "patient": {
            "local_id": f"ORAN-{uuid.uuid4().hex[:8]}",
            "name": "Amina Belkacem",
            "sex": "F",
            "birth_date": "1971-03-02",
        },
        "question": "Graft dysfunction three months after kidney transplant: biopsy?",
        "summary": "Creatinine rising from 110 to 190 µmol/L over six weeks.",
        "specialty": "nephrology",
        "urgency": "routine",
        "service": "second_opinion",
        "languages": ["fr"],
    }


def test_every_part_is_ready_behind_one_origin(topology: Topology) -> None:  # noqa: F811
    assert httpx.get(topology.proxy_url + "/healthz").json() == {"status": "ok"}
    for service in ("referral", "imaging", "teleconsult"):
        ready = httpx.get(f"{topology.proxy_url}/_ops/{service}/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["service"] == service
    imaging = httpx.get(topology.proxy_url + "/_ops/imaging/readyz").json()
    assert set(imaging["stores"]) == {"DZ-ORAN-EHU", "FR-PARIS-APHP"}
    assert all(answer.startswith("Orthanc 1.") for answer in imaging["stores"].values())
    # The de-identified copies are in the shared Orthanc, not files.
    assert imaging["shared_store"].startswith("Orthanc 1."), imaging
    teleconsult = httpx.get(topology.proxy_url + "/_ops/teleconsult/readyz").json()
    assert teleconsult["signalling"] == "ok" and teleconsult["broker"] == "ok"
    # The public origin does not publish metrics; operators read them at /_ops/.
    nginx_problem(httpx.get(topology.proxy_url + "/metrics"), 404, "not_found")


def test_every_process_runs_in_production_with_the_secrets_kept_for_the_run(
    topology: Topology,  # noqa: F811
) -> None:
    """As compose: production settings, so no development default; the admin's password is
    the one kept (mode 0600) in the data directory, and the default `admin` is refused."""
    kept = topology.data_dir / credentials.FILE
    assert kept.stat().st_mode & 0o777 == 0o600
    secrets = json.loads(kept.read_text())
    for name in ("referral", "imaging", "teleconsult", "worker", "beat"):
        pid = topology.processes[name].pid
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert b"JISR_ENVIRONMENT=production" in environ, name
        for setting in credentials.LASTING:
            assert f"{setting}={secrets[setting]}".encode() in environ, (name, setting)
    assert secrets["JISR_ADMIN_PASSWORD"] != DEV_ADMIN_PASSWORD
    assert secrets["JISR_PSEUDONYM_SECRET"] != Settings.model_fields["pseudonym_secret"].default
    signed_in = httpx.post(
        topology.proxy_url + "/auth/token",
        data={"username": "admin", "password": secrets["JISR_ADMIN_PASSWORD"]},
    )
    assert signed_in.status_code == 200, signed_in.text
    default = httpx.post(
        topology.proxy_url + "/auth/token",
        data={"username": "admin", "password": DEV_ADMIN_PASSWORD},
    )
    assert default.status_code == 401


def test_a_demo_user_signs_in_and_a_wrong_password_is_refused(
    topology: Topology,  # noqa: F811
) -> None:
    good = token(topology, "oran.referrer")
    me = httpx.get(topology.proxy_url + "/api/users/me", headers=bearer(good))
    assert me.status_code == 200 and me.json()["username"] == "oran.referrer"
    wrong = httpx.post(
        topology.proxy_url + "/auth/token",
        data={"username": "oran.referrer", "password": "not-the-password"},
    )
    assert wrong.status_code == 401
    assert httpx.get(topology.proxy_url + "/api/users/me").status_code == 401


def test_a_referral_submitted_through_the_proxy_is_counted(
    topology: Topology,  # noqa: F811
) -> None:
    metrics_url = topology.proxy_url + "/_ops/referral/metrics"
    before = httpx.get(metrics_url).text
    referrer = token(topology, "oran.referrer")
    key = uuid.uuid4().hex
    headers = {**bearer(referrer), "Idempotency-Key": key}
    body = referral_body()
    first = httpx.post(topology.proxy_url + "/api/referrals", json=body, headers=headers)
    assert first.status_code == 201, first.text
    again = httpx.post(topology.proxy_url + "/api/referrals", json=body, headers=headers)
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
    # A specialist of the partner may not submit on Oran's behalf.
    specialist = token(topology, "aphp.specialist")
    refused = httpx.post(
        topology.proxy_url + "/api/referrals",
        json=referral_body(),
        headers={**bearer(specialist), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert refused.status_code == 403, refused.text
    after = httpx.get(metrics_url).text
    name = "jisr_http_requests_total"
    labels = {"service": "referral", "route": "/api/referrals", "method": "POST"}
    moved = (sample(after, name, status="201", **labels) or 0) - (
        sample(before, name, status="201", **labels) or 0
    )
    assert moved == 2
    assert (sample(after, name, status="403", **labels) or 0) >= 1
    status = first.json()["status"]
    assert (sample(after, "jisr_referrals", status=status) or 0) >= 1
    assert sample(after, "jisr_metrics_source_up", source="broker") == 1


def stow_body(data: bytes) -> tuple[bytes, str]:
    """A STOW-RS request body of one instance and its content type."""
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def test_a_study_stored_through_the_proxy_lands_in_the_local_orthanc_only(
    topology: Topology,  # noqa: F811
) -> None:
    path = Path(str(get_testdata_file("CT_small.dcm")))
    study_uid = str(dcmread(path, stop_before_pixels=True).StudyInstanceUID)
    body, content_type = stow_body(path.read_bytes())
    stranger = token(topology, "aphp.specialist")
    refused = httpx.post(
        topology.proxy_url + "/dicomweb/studies",
        content=body,
        headers={**bearer(stranger), "Content-Type": content_type},
    )
    assert refused.status_code == 403, refused.text
    radiologist = token(topology, "oran.radiologist")
    stored = httpx.post(
        topology.proxy_url + "/dicomweb/studies",
        content=body,
        headers={
            **bearer(radiologist),
            "Content-Type": content_type,
            "Accept": "application/dicom+json",
        },
        timeout=60,
    )
    assert stored.status_code == 200, stored.text
    local, partner = topology.orthancs["local"], topology.orthancs["partner"]

    assert len(orthanc_studies(local, study_uid)) == 1
    assert orthanc_studies(partner, study_uid) == []
    # Orthanc answers nobody without its credentials.
    assert httpx.get(local.url + "/system").status_code == 401


def fresh_study() -> tuple[bytes, str]:
    """CT_small with new UIDs: a study no other test stored."""
    ds = dcmread(str(get_testdata_file("CT_small.dcm")))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = (
        generate_uid(),
        generate_uid(),
        generate_uid(),
    )
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue(), str(ds.StudyInstanceUID)


def orthanc_studies(o: OrthancEndpoint, study_uid: str) -> list[str]:
    found = httpx.post(
        f"{o.url}/tools/find",
        json={"Level": "Study", "Query": {"StudyInstanceUID": study_uid}},
        auth=(o.username, o.password),
    )
    assert found.status_code == 200, found.text
    ids: list[str] = found.json()
    return ids


def shared_for_the_partner(topology: Topology) -> tuple[int, str, str]:  # noqa: F811
    """STOW, referral, share, all through the proxy: (share id, copy's UID, original's UID)."""
    proxy = topology.proxy_url
    radiologist = bearer(token(topology, "oran.radiologist"))
    data, study_uid = fresh_study()
    body, content_type = stow_body(data)
    stored = httpx.post(
        proxy + "/dicomweb/studies",
        content=body,
        headers={**radiologist, "Content-Type": content_type},
        timeout=60,
    )
    assert stored.status_code == 200, stored.text
    referrer = token(topology, "oran.referrer")
    referral = httpx.post(
        proxy + "/api/referrals",
        json={**referral_body(), "study_uids": [study_uid]},
        headers={**bearer(referrer), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert referral.status_code == 201, referral.text
    assert referral.json()["provider"]["code"] == "FR-PARIS-APHP"
    share = httpx.post(
        proxy + "/api/imaging/shares",
        json={"study_uid": study_uid, "referral_id": referral.json()["id"]},
        headers=radiologist,
        timeout=60,
    )
    assert share.status_code == 201, share.text
    share_id, shared_uid = share.json()["id"], share.json()["shared_study_uid"]
    assert share.json()["status"] == "ready" and shared_uid != study_uid
    return share_id, shared_uid, study_uid


def test_a_share_is_forwarded_by_the_worker_to_the_partners_orthanc_with_the_request_id(
    topology: Topology,  # noqa: F811
) -> None:
    """Referral, STOW, share, forward: the worker pushes the de-identified copy to the partner.

    The request id given to the forward request is in the worker's JSON log lines.
    """
    proxy = topology.proxy_url
    radiologist = bearer(token(topology, "oran.radiologist"))
    share_id, shared_uid, study_uid = shared_for_the_partner(topology)

    partner = bearer(token(topology, "aphp.specialist"))
    refused = httpx.post(f"{proxy}/api/imaging/shares/{share_id}/forward", headers=partner)
    assert refused.status_code in (403, 404), refused.text
    request_id = f"topology-{uuid.uuid4().hex}"
    started = httpx.post(
        f"{proxy}/api/imaging/shares/{share_id}/forward",
        headers={**radiologist, "X-Request-ID": request_id},
    )
    assert started.status_code == 202, started.text
    assert started.headers["x-request-id"] == request_id

    def done() -> bool:
        state = httpx.get(f"{proxy}/api/imaging/shares/{share_id}/forwarding", headers=radiologist)
        assert state.status_code == 200, state.text
        assert state.json()["state"] != "failed", state.text
        return bool(state.json()["state"] == "done")

    wait_until("the forwarding", done, watch=[topology.processes["worker"]], timeout_s=90)
    partner_store = topology.orthancs["partner"]
    assert len(orthanc_studies(partner_store, shared_uid)) == 1
    assert orthanc_studies(partner_store, study_uid) == []  # never the original
    lines = (topology.log_dir / "worker.log").read_text().splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    followed = [e for e in entries if e.get("request_id") == request_id]
    assert followed, "the worker logged nothing with the request's id"


def test_the_partner_reads_the_copy_from_the_shared_orthanc_sent_by_nginx(
    topology: Topology,  # noqa: F811
) -> None:
    """The copy is stored in the shared Orthanc (not the originals' nor files); the imaging
    service answers the partner's WADO-RS with an empty redirect, and nginx sends Orthanc's
    own answer, byte for byte; a third institution gets the service's 404 and no bytes."""
    _, shared_uid, study_uid = shared_for_the_partner(topology)
    shared, local = topology.orthancs["shared"], topology.orthancs["local"]
    assert len(orthanc_studies(shared, shared_uid)) == 1
    assert orthanc_studies(shared, study_uid) == []  # never an original
    assert orthanc_studies(local, shared_uid) == []
    assert not (topology.data_dir / "imaging" / "shared").exists()
    path = f"/dicomweb/studies/{shared_uid}"
    reader = {**bearer(token(topology, "aphp.radiologist")), **ACCEPT}

    through_nginx = httpx.get(topology.proxy_url + path, headers=reader, timeout=60)
    service_alone = httpx.get(topology.service_urls["imaging"] + path, headers=reader)
    direct = httpx.get(
        f"{shared.url}/dicom-web/studies/{shared_uid}",
        headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
        auth=(shared.username, shared.password),
    )
    stranger = httpx.get(
        topology.proxy_url + path,
        headers={**bearer(token(topology, "curie.radiologist")), **ACCEPT},
    )

    assert through_nginx.status_code == 200, through_nginx.text
    files = dicom_parts(through_nginx)
    assert len(files) == 1 and files == dicom_parts(direct)
    assert dcmread(io.BytesIO(files[0])).StudyInstanceUID == shared_uid
    assert through_nginx.headers["cache-control"] == "no-store"  # the internal location's
    assert shared.password not in str(through_nginx.headers)
    assert service_alone.status_code == 200 and service_alone.content == b""
    assert (
        service_alone.headers["x-accel-redirect"] == f"{configs.ACCEL_REDIRECT}studies/{shared_uid}"
    )
    assert stranger.status_code == 404, stranger.text
    assert stranger.headers["content-type"] == "application/problem+json"
    assert b"DICM" not in stranger.content
    # nginx's configuration holds the shared Orthanc's credentials: this user's alone.
    conf = topology.data_dir.parent / "conf" / "jisr.conf"
    assert (
        configs.shared_store_proxy(topology.env)["SHARED_STORE_AUTHORIZATION"] in conf.read_text()
    )
    assert conf.stat().st_mode & 0o777 == 0o600


def nginx_problem(response: httpx.Response, status: int, slug: str) -> dict[str, object]:
    """A problem nginx made itself, shaped like the services' (shared/problems.py)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, object] = response.json()
    assert body == {
        "type": f"urn:jisr:problem:{slug.replace('_', '-')}",
        "title": translate(f"problem.{slug}", "en"),
        "status": status,
        "detail": body["detail"],
        "request_id": response.headers["x-request-id"],
    }
    assert body["detail"] and "nginx" not in response.text
    return body


def test_a_body_over_the_proxys_cap_is_a_413_problem_and_reaches_no_service(
    topology: Topology,  # noqa: F811
) -> None:
    referrer = bearer(token(topology, "oran.referrer"))
    listed = httpx.get(topology.proxy_url + "/api/referrals", headers=referrer)
    assert listed.status_code == 200, listed.text
    request_id = f"too-big-{uuid.uuid4().hex}"
    headers = {**referrer, "Idempotency-Key": uuid.uuid4().hex, "X-Request-ID": request_id}
    headers["Content-Type"] = "application/json"
    body = b'{"question": "' + b"x" * (26 * 1024 * 1024) + b'"}'

    refused = httpx.post(topology.proxy_url + "/api/referrals", content=body, headers=headers)

    problem = nginx_problem(refused, 413, "payload_too_large")
    assert problem["request_id"] == request_id
    after = httpx.get(topology.proxy_url + "/api/referrals", headers=referrer)
    assert after.json() == listed.json()
    logged = (topology.log_dir / "referral.log").read_text()
    assert request_id not in logged  # nginx refused it before the service saw a byte


def test_a_service_down_is_a_retryable_502_problem_from_the_proxy(
    topology: Topology,  # noqa: F811
) -> None:
    """The teleconsult service stopped: its paths are a problem with Retry-After (as the
    services' own 503), the other services still answer; back when it is."""
    referrer = bearer(token(topology, "oran.referrer"))
    teleconsult = topology.processes["teleconsult"]
    teleconsult.stop()
    try:
        down = httpx.get(
            topology.proxy_url + "/api/teleconsults",
            headers={**referrer, "X-Request-ID": 'not "sane" {id}'},
        )
        referrals = httpx.get(topology.proxy_url + "/api/referrals", headers=referrer)
    finally:
        teleconsult.start()
        topology.wait_ready("teleconsult")

    problem = nginx_problem(down, 502, "service_unavailable")
    assert down.headers["retry-after"] == str(RETRY_AFTER_S)
    # An id that is not a sane token is replaced by nginx's own, as the services do.
    assert re.fullmatch(r"[0-9a-f]{32}", str(problem["request_id"]))
    assert referrals.status_code == 200
    back = httpx.get(topology.proxy_url + "/api/teleconsults", headers=referrer)
    assert back.status_code == 200, back.text


def test_teleconsult_answers_its_paths_through_the_proxy(topology: Topology) -> None:  # noqa: F811
    referrer = token(topology, "oran.referrer")
    listed = httpx.get(topology.proxy_url + "/api/teleconsults", headers=bearer(referrer))
    assert listed.status_code == 200, listed.text
    assert httpx.get(topology.proxy_url + "/api/teleconsults").status_code == 401
    metrics = httpx.get(topology.proxy_url + "/_ops/teleconsult/metrics").text
    for status in ("200", "401"):
        counted = sample(
            metrics,
            "jisr_http_requests_total",
            service="teleconsult",
            route="/api/teleconsults",
            status=status,
        )
        assert counted is not None and counted >= 1


async def test_the_signalling_socket_upgrades_through_the_proxy_to_teleconsult(
    topology: Topology,  # noqa: F811
) -> None:
    """A socket with a bad join token is accepted by teleconsult, then closed by policy (1008).

    The referral service would refuse the handshake itself: the close code proves the
    upgrade crossed the proxy and reached the right service.
    """
    url = topology.proxy_url.replace("http://", "ws://") + "/ws/teleconsults/1?token=not-a-token"
    origin = topology.proxy_url
    async with websockets.connect(url, origin=origin, open_timeout=10) as socket:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


def test_the_worker_and_beat_run_on_redis(topology: Topology) -> None:  # noqa: F811
    from celery import Celery

    probe = Celery("probe", broker=topology.broker_url)
    try:
        answers = probe.control.ping(destination=[topology.worker_hostname], timeout=5)
    finally:
        probe.close()
    assert answers and json.dumps(answers).count("pong") == 1
    assert topology.processes["beat"].alive
    assert (topology.data_dir / "celerybeat-schedule").exists() or any(
        p.name.startswith("celerybeat-schedule") for p in topology.data_dir.iterdir()
    )
