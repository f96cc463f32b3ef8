"""The platform's main journeys over real HTTP, on `jisr run` and on the production topology.

Nothing in process: every step is a public request to the platform's one origin
(`platform_server`: the embedded app, or nginx in front of the services, the
Celery worker, PostgreSQL, Redis, two Orthancs and coturn), as demo users
(`jisr-demo`). Oran (DZ-ORAN-EHU) refers to AP-HP (FR-PARIS-APHP) under the demo's
AG-2024-ORAN-APHP; Institut Curie (FR-PARIS-CURIE) stands for a third institution
with no part in the case. Each journey has callers who must be refused.

1. referral: submitted (replayed with its Idempotency-Key, also by parallel
   retries), routed to AP-HP, accepted once (also when three accept at once), seen
   by the referrer with its timeline; malformed input gets problem+json and
   changes nothing;
2. imaging: Oran's radiologist stores a generated study with STOW-RS and shares
   it; AP-HP's radiologist finds and reads it with dicomweb-client, with none of
   its identifiers and its references consistent, and signs a report, which the
   worker puts on the referral's timeline (and tells the referrer); the topology
   forwards the copy to AP-HP's own Orthanc (`jisr run` names no such store);
   Oran revokes the share and AP-HP reads nothing more;
3. teleconsult: scheduled, joined over REST (TURN credentials that the topology's
   coturn accepts) and over the signalling socket, where the host admits the
   referrer; forged, expired, cross-site and other-room tokens are closed out;
   the outcome reaches the timeline;
4. operations: a client's X-Request-ID follows its request into the worker's JSON
   log line of the task, and metrics stay off the public origin.

Waits poll the platform's own answers against a deadline; none is a sleep.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import jwt
import pydicom
import pytest
from aioice import stun
from aioice.turn import create_turn_endpoint
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from requests import HTTPError

from services.imaging import deid
from shared.identity.tokens import Keyring
from tests.e2e.conftest import DEMO_PASSWORD, Platform
from tests.imaging.factories import instance
from tests.imaging.test_shares import original_identifiers
from tests.integration.test_topology import referral_body as topology_referral
from tests.teleconsult.peers import SignallingClient

T = TypeVar("T")
WITHIN_S = 60.0
"""How long a background effect (a Celery task, a forwarding) may take to show."""
PROBLEM_JSON = "application/problem+json"
ORAN, APHP, CURIE = "oran", "aphp", "curie"


def eventually(what: str, probe: Callable[[], T | None], within: float = WITHIN_S) -> T:
    """Poll `probe` until it returns something; fail with `what` at the deadline."""
    deadline = time.monotonic() + within
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {within:.0f} s")
        time.sleep(0.2)


class Api:
    """One httpx client on the platform's origin; `as_(user)` signs a demo user in once."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.http = httpx.Client(base_url=platform.base_url, timeout=60)
        self._tokens: dict[str, str] = {}

    def token(self, username: str) -> str:
        if username not in self._tokens:
            answer = self.http.post(
                "/auth/token", data={"username": username, "password": DEMO_PASSWORD}
            )
            assert answer.status_code == 200, answer.text
            self._tokens[username] = answer.json()["access_token"]
        return self._tokens[username]

    def as_(self, username: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(username)}", **extra}

    def dicomweb(self, username: str) -> DICOMwebClient:
        return DICOMwebClient(url=self.platform.base_url + "/dicomweb", headers=self.as_(username))

    def submit(self, study_uids: list[str] | None = None, **headers: str) -> httpx.Response:
        return self.http.post(
            "/api/referrals",
            json=referral_body(study_uids or []),
            headers=self.as_(f"{ORAN}.referrer", **headers),
        )

    def accepted_referral(self, study_uids: list[str] | None = None) -> dict[str, Any]:
        """A referral of Oran's referrer that AP-HP's specialist accepted."""
        submitted = self.submit(study_uids, **{"Idempotency-Key": uuid.uuid4().hex})
        assert submitted.status_code == 201, submitted.text
        referral_id = submitted.json()["id"]
        accepted = self.http.post(
            f"/api/referrals/{referral_id}/accept", headers=self.as_(f"{APHP}.specialist")
        )
        assert accepted.status_code == 200, accepted.text
        body: dict[str, Any] = accepted.json()
        return body

    def history(self, referral_id: int) -> list[dict[str, Any]]:
        """The referral's timeline as its referrer sees it, oldest first."""
        answer = self.http.get(
            f"/api/referrals/{referral_id}/history", headers=self.as_(f"{ORAN}.referrer")
        )
        assert answer.status_code == 200, answer.text
        events: list[dict[str, Any]] = answer.json()
        return events

    def event_of(self, referral_id: int, kind: str) -> dict[str, Any] | None:
        found = [event for event in self.history(referral_id) if event["kind"] == kind]
        return found[0] if found else None

    def until(
        self, what: str, path: str, username: str, key: str, *, ready: str, failed: str
    ) -> dict[str, Any]:
        """GET `path` as `username` until its `key` is `ready`; fail at once on `failed`."""

        def probe() -> dict[str, Any] | None:
            answer = self.http.get(path, headers=self.as_(username))
            assert answer.status_code == 200, answer.text
            body: dict[str, Any] = answer.json()
            assert body[key] != failed, body
            return body if body[key] == ready else None

        return eventually(what, probe)

    def me(self, username: str) -> dict[str, Any]:
        answer = self.http.get("/api/users/me", headers=self.as_(username))
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body


@pytest.fixture(scope="module")
def api(platform_server: Platform) -> Iterator[Api]:
    client = Api(platform_server)
    try:
        yield client
    finally:
        client.http.close()


def referral_body(study_uids: list[str]) -> dict[str, Any]:
    """A nephrology second opinion on a new patient of Oran's."""
    return {**topology_referral(), "study_uids": study_uids}


def is_problem(answer: httpx.Response, status: int) -> dict[str, Any]:
    """`answer` is RFC 9457 problem+json with `status`; its body."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM_JSON), answer.headers
    body: dict[str, Any] = answer.json()
    assert body["status"] == status and body["type"].startswith("urn:jisr:problem:"), body
    return body


def outbox_count(api: Api) -> int:
    answer = api.http.get(
        "/api/referrals", params={"box": "outbox"}, headers=api.as_(f"{ORAN}.referrer")
    )
    assert answer.status_code == 200, answer.text
    total: int = answer.json()["pagination"]["total_count"]
    return total


# -- 1. referral ---------------------------------------------------------------------------


def test_a_referral_is_submitted_once_routed_accepted_and_followed_by_its_referrer(
    api: Api,
) -> None:
    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = referral_body([])
    referrer = api.as_(f"{ORAN}.referrer", **key)
    first = api.http.post("/api/referrals", json=body, headers=referrer)
    assert first.status_code == 201, first.text
    referral = first.json()
    replay = api.http.post("/api/referrals", json=body, headers=referrer)
    assert replay.status_code == 201 and replay.json()["id"] == referral["id"]
    assert replay.headers.get("idempotent-replayed") == "true"
    # The same key with another body is refused rather than creating a second referral.
    other = api.http.post("/api/referrals", json=referral_body([]), headers=referrer)
    is_problem(other, 422)

    # Routed at once to the entitled partner, which sees it in its inbox.
    assert referral["status"] == "offered", referral
    assert referral["provider"]["code"] == "FR-PARIS-APHP"
    assert referral["routing"], "the routing reasons are kept"
    inbox = api.http.get(
        "/api/referrals", params={"box": "inbox"}, headers=api.as_(f"{APHP}.specialist")
    )
    assert referral["id"] in [item["id"] for item in inbox.json()["items"]]

    # A third institution does not learn that the referral exists.
    path = f"/api/referrals/{referral['id']}"
    for stranger in (f"{CURIE}.specialist", f"{CURIE}.coordinator"):
        is_problem(api.http.get(path, headers=api.as_(stranger)), 404)
        is_problem(api.http.post(path + "/accept", headers=api.as_(stranger)), 404)
        is_problem(api.http.get(path + "/history", headers=api.as_(stranger)), 404)
    # At the partner, clinicians and coordinators accept (workflow.PROVIDER_ROLES); its
    # referring physicians and auditors do not, nor does the referrer its own case.
    for not_allowed in (f"{APHP}.referrer", f"{APHP}.auditor", f"{ORAN}.referrer"):
        is_problem(api.http.post(path + "/accept", headers=api.as_(not_allowed)), 403)
    assert api.http.get(path, headers=api.as_(f"{ORAN}.referrer")).json()["status"] == "offered"

    accepted = api.http.post(path + "/accept", headers=api.as_(f"{APHP}.specialist"))
    assert accepted.status_code == 200, accepted.text
    seen = api.http.get(path, headers=api.as_(f"{ORAN}.referrer")).json()
    assert seen["status"] == "accepted" and seen["side"] == "origin"
    assert seen["specialist_id"] == api.me(f"{APHP}.specialist")["id"]
    kinds = [event["kind"] for event in api.history(referral["id"])]
    assert kinds.index("submitted") < kinds.index("accepted"), kinds
    # Accepting twice is a conflict, not a second consumption of the quota.
    is_problem(api.http.post(path + "/accept", headers=api.as_(f"{APHP}.specialist")), 409)


def test_retries_and_rival_accepts_at_once_make_one_referral_accepted_once(api: Api) -> None:
    """A client retrying in parallel with one key, and three of AP-HP's staff accepting at once."""
    before = outbox_count(api)
    body = referral_body([])
    headers = api.as_(f"{ORAN}.referrer", **{"Idempotency-Key": uuid.uuid4().hex})

    def submit(_: int) -> httpx.Response:
        with httpx.Client(base_url=api.platform.base_url, timeout=60) as client:
            return client.post("/api/referrals", json=body, headers=headers)

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(submit, range(6)))
    created = {a.json()["id"] for a in answers if a.status_code == 201}
    busy = [a for a in answers if a.status_code != 201]
    assert len(created) == 1, [a.text for a in answers]
    for answer in busy:  # PostgreSQL: the others are told to retry; SQLite serialises them
        assert is_problem(answer, 409).get("rule") == "idempotency_in_progress", answer.text
    assert outbox_count(api) == before + 1
    (referral_id,) = created

    def accept(staff: dict[str, str]) -> httpx.Response:
        with httpx.Client(base_url=api.platform.base_url, timeout=60) as client:
            return client.post(f"/api/referrals/{referral_id}/accept", headers=staff)

    staff = [api.as_(f"{APHP}.{role}") for role in ("specialist", "coordinator", "radiologist")]
    with ThreadPoolExecutor(3) as pool:
        accepts = list(pool.map(accept, staff))
    assert sorted(a.status_code for a in accepts) == [200, 409, 409], [a.text for a in accepts]
    for answer in accepts:
        if answer.status_code == 409:
            is_problem(answer, 409)
    kinds = [event["kind"] for event in api.history(referral_id)]
    assert kinds.count("accepted") == 1, kinds


def test_malformed_referrals_get_problem_json_and_change_nothing(api: Api) -> None:
    before = outbox_count(api)
    headers = api.as_(f"{ORAN}.referrer")
    future = referral_body([])
    future["patient"]["birth_date"] = "2999-01-01"
    unknown = {**referral_body([]), "specialty": "astrology", "urgency": "yesterday"}
    extra = {**referral_body([]), "priority": "vip"}
    no_patient = {k: v for k, v in referral_body([]).items() if k != "patient"}
    bad_uid = referral_body(["not-a-uid"])
    for body in (future, unknown, extra, no_patient, bad_uid):
        is_problem(api.http.post("/api/referrals", json=body, headers=headers), 422)
    not_json = api.http.post(
        "/api/referrals",
        content=b'{"patient": ',
        headers={**headers, "Content-Type": "application/json"},
    )
    is_problem(not_json, 422)
    long_key = api.http.post(
        "/api/referrals",
        json=referral_body([]),
        headers={**headers, "Idempotency-Key": "k" * 300},
    )
    is_problem(long_key, 400)
    is_problem(api.http.get("/api/referrals/not-a-number", headers=headers), 422)
    is_problem(api.http.post("/api/referrals", json=referral_body([])), 401)
    assert outbox_count(api) == before


# -- 2. imaging ----------------------------------------------------------------------------


def generated_study() -> tuple[list[Dataset], list[bytes], str]:
    """Two CT images of one new study, the second referring to the first (as a localiser)."""
    study, series = str(generate_uid()), str(generate_uid())
    patient, accession = f"ORAN-{uuid.uuid4().hex[:8]}", f"ACC-{uuid.uuid4().hex[:6]}"
    first, second = (
        pydicom.dcmread(
            io.BytesIO(
                instance(
                    study_uid=study,
                    series_uid=series,
                    patient_id=patient,
                    patient_name="Belkacem^Amina",
                    accession_number=accession,
                    instance_number=number,
                )
            )
        )
        for number in (1, 2)
    )
    reference = Dataset()
    reference.ReferencedSOPClassUID = first.SOPClassUID
    reference.ReferencedSOPInstanceUID = first.SOPInstanceUID
    second.ReferencedImageSequence = [reference]
    files = []
    for ds in (first, second):
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        files.append(out.getvalue())
    return [first, second], files, study


def study_uids(found: list[dict[str, Any]]) -> list[str]:
    """The Study Instance UIDs of a QIDO-RS answer (PS3.18 JSON)."""
    return [str(study["0020000D"]["Value"][0]) for study in found]


def status_of(error: HTTPError) -> int | None:
    return error.response.status_code if error.response is not None else None


def test_a_study_shared_for_a_referral_is_read_de_identified_by_the_partner_and_reported(
    api: Api,
) -> None:
    datasets, files, study_uid = generated_study()
    origin = api.dicomweb(f"{ORAN}.radiologist")
    # An auditor reads the record; it never writes into the store.
    with pytest.raises(HTTPError) as refused:
        api.dicomweb(f"{ORAN}.auditor").store_instances(datasets)
    assert status_of(refused.value) == 403
    stored = origin.store_instances(datasets)
    assert len(stored.ReferencedSOPSequence) == 2 and "FailedSOPSequence" not in stored

    referral = api.accepted_referral([study_uid])
    create = {"study_uid": study_uid, "referral_id": referral["id"]}
    # Only Oran shares Oran's study, and not its auditor; to anyone else the referral is unknown.
    for caller, status in (
        (f"{ORAN}.auditor", 403),
        (f"{APHP}.radiologist", 404),
        (f"{CURIE}.radiologist", 404),
    ):
        answer = api.http.post("/api/imaging/shares", json=create, headers=api.as_(caller))
        is_problem(answer, status)
    is_problem(
        api.http.post(
            "/api/imaging/shares",
            json={"study_uid": "1.2.3..4", "referral_id": referral["id"]},
            headers=api.as_(f"{ORAN}.radiologist"),
        ),
        422,
    )
    shared = api.http.post(
        "/api/imaging/shares", json=create, headers=api.as_(f"{ORAN}.radiologist")
    )
    assert shared.status_code == 201, shared.text
    share_id = shared.json()["id"]

    share = api.until(
        "the share ready for the partner",
        f"/api/imaging/shares/{share_id}",
        f"{APHP}.radiologist",
        "status",
        ready="ready",
        failed="blocked",
    )
    shared_uid = share["shared_study_uid"]
    assert share["study_uid"] is None, "the provider never learns the original study UID"
    assert shared_uid and shared_uid != study_uid and share["instances"] == 2

    # AP-HP's radiologist finds and retrieves it; nothing of the original comes back.
    reader = api.dicomweb(f"{APHP}.radiologist")
    found = reader.search_for_studies(search_filters={"StudyInstanceUID": shared_uid})
    assert study_uids(found) == [shared_uid]
    everything = study_uids(reader.search_for_studies())
    assert shared_uid in everything and study_uid not in everything
    assert reader.search_for_studies(search_filters={"StudyInstanceUID": study_uid}) == []
    series = reader.search_for_series(study_instance_uid=shared_uid)
    assert len(series) == 1
    series_uid = series[0]["0020000E"]["Value"][0]
    listed = reader.search_for_instances(
        study_instance_uid=shared_uid, series_instance_uid=series_uid
    )
    assert len(listed) == 2
    retrieved = reader.retrieve_study(shared_uid)
    assert len(retrieved) == 2
    identifiers = original_identifiers(files)
    for ds in retrieved:
        assert deid.scan(ds, identifiers) == [], "an original identifier reached the partner"
        assert ds.StudyInstanceUID == shared_uid
    originals = {str(ds.SOPInstanceUID) for ds in datasets}
    sops = {str(ds.SOPInstanceUID) for ds in retrieved}
    assert not sops & originals and len({str(ds.SeriesInstanceUID) for ds in retrieved}) == 1
    referring = [ds for ds in retrieved if "ReferencedImageSequence" in ds]
    assert len(referring) == 1
    target = referring[0].ReferencedImageSequence[0].ReferencedSOPInstanceUID
    assert target in sops and target != referring[0].SOPInstanceUID

    # A third institution gets nothing: no share, no study, an empty search.
    curie = f"{CURIE}.radiologist"
    is_problem(api.http.get(f"/api/imaging/shares/{share_id}", headers=api.as_(curie)), 404)
    stranger = api.dicomweb(curie)
    assert stranger.search_for_studies(search_filters={"StudyInstanceUID": shared_uid}) == []
    assert shared_uid not in study_uids(stranger.search_for_studies())
    with pytest.raises(HTTPError) as hidden:
        stranger.retrieve_study(shared_uid)
    assert status_of(hidden.value) == 404

    # The report: signed by the partner's radiologist only, then on the referral's timeline.
    report = {"findings": "Greffon de taille normale, pas de collection.", "impression": "RAS."}
    path = f"/api/imaging/shares/{share_id}/report"
    for refused_as, status in (
        (f"{APHP}.specialist", 403),
        (f"{ORAN}.radiologist", 403),
        (curie, 404),
    ):
        is_problem(api.http.post(path, json=report, headers=api.as_(refused_as)), status)
    is_problem(
        api.http.post(path, json={"findings": ""}, headers=api.as_(f"{APHP}.radiologist")), 422
    )
    signed = api.http.post(path, json=report, headers=api.as_(f"{APHP}.radiologist"))
    assert signed.status_code == 201, signed.text
    event = eventually(
        "the imaging report on the referral's timeline",
        lambda: api.event_of(referral["id"], "imaging_report"),
    )
    assert event["data"]["report_id"] == signed.json()["id"], event
    assert event["data"]["share_id"] == share_id and event["data"]["impression"] == "RAS."
    assert event["actor_name"] == signed.json()["author_name"]
    read_back = api.http.get(path, headers=api.as_(f"{ORAN}.referrer"))
    assert read_back.status_code == 200 and read_back.json()["impression"] == "RAS."

    notices = api.http.get("/api/notifications", headers=api.as_(f"{ORAN}.referrer")).json()
    assert any(
        n["kind"] == "imaging_report" and n["resource_id"] == str(referral["id"])
        for n in notices["items"]
    ), notices

    forwarding(api, share_id)

    # Oran withdraws the share: the partner can no longer find or read the copy.
    revoke = f"/api/imaging/shares/{share_id}/revoke"
    is_problem(api.http.post(revoke, headers=api.as_(f"{APHP}.radiologist")), 403)
    revoked = api.http.post(revoke, headers=api.as_(f"{ORAN}.radiologist"))
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked", revoked.text
    assert reader.search_for_studies(search_filters={"StudyInstanceUID": shared_uid}) == []
    with pytest.raises(HTTPError) as gone:
        reader.retrieve_study(shared_uid)
    assert status_of(gone.value) == 404


def forwarding(api: Api, share_id: int) -> None:
    """The topology pushes the share into AP-HP's own Orthanc; `jisr run` names no store."""
    path = f"/api/imaging/shares/{share_id}/forward"
    is_problem(api.http.post(path, headers=api.as_(f"{APHP}.radiologist")), 403)
    is_problem(api.http.post(path, headers=api.as_(f"{CURIE}.radiologist")), 404)
    started = api.http.post(path, headers=api.as_(f"{ORAN}.radiologist"))
    if api.platform.kind == "embedded":
        # The embedded demo institutions keep no store of their own (README: imaging_store).
        is_problem(started, 422)
        return
    assert started.status_code == 202, started.text

    state = api.until(
        "the forwarding to the partner's Orthanc",
        f"/api/imaging/shares/{share_id}/forwarding",
        f"{APHP}.radiologist",
        "state",
        ready="done",
        failed="failed",
    )
    assert state["sent"] == state["total"] == 2, state


# -- 3. teleconsult ------------------------------------------------------------------------


def resigned(api: Api, token: str, ttl_s: int) -> str:
    """The same grant signed again by the platform's own key, valid for `ttl_s` from now."""
    claims = jwt.decode(token, options={"verify_signature": False})
    keyring = Keyring.load_or_create(api.platform.data_dir / "keys" / "signing-key.pem")
    again, _ = keyring.issue(
        subject=claims["sub"],
        username=claims["preferred_username"],
        issuer=claims["iss"],
        audience=claims["aud"],
        ttl_s=ttl_s,
        extra={k: claims[k] for k in ("sid", "inst", "role", "kind", "lang")},
    )
    return again


async def _welcome(api: Api, session_id: int, token: str) -> dict[str, Any]:
    base = api.platform.base_url
    async with SignallingClient.open(base, session_id, token, origin=base) as client:
        return await client.expect("welcome")


async def _in_the_room(api: Api, session_id: int, host: str, guest: str) -> None:
    base = api.platform.base_url
    guest_peer = f"user:{api.me(f'{ORAN}.referrer')['id']}"
    async with SignallingClient.open(base, session_id, host, origin=base) as h:
        welcome = await h.expect("welcome")
        assert welcome["role"] == "host" and welcome["waiting"] is False
        async with SignallingClient.open(base, session_id, guest, origin=base) as g:
            waiting = await g.expect("welcome")
            assert waiting["waiting"] is True and waiting["peer_id"] == guest_peer
            joined = await h.expect("peer-joined", peer_id=guest_peer)
            assert joined["waiting"] is True
            await h.send({"type": "admit", "peer_id": guest_peer})
            admitted = await g.expect("admitted", peer_id=guest_peer)
            assert [p["peer_id"] for p in admitted["peers"]] == [welcome["peer_id"]]
            await h.send({"type": "chat", "text": "مرحبا, bonjour"})
            assert (await g.expect("chat"))["text"] == "مرحبا, bonjour"
            await g.send({"type": "leave"})
            assert await g.wait_closed() == 1000


async def _refused(api: Api, session_id: int, token: str, origin: str | None = None) -> str:
    """The reason the signalling socket gave when it closed on this token by policy (1008)."""
    base = api.platform.base_url
    async with SignallingClient.open(base, session_id, token, origin=origin or base) as client:
        assert await client.wait_closed() == 1008
        return client.close_reason


def refused(api: Api, session_id: int, token: str, origin: str | None = None) -> str:
    return asyncio.run(_refused(api, session_id, token, origin))


def scheduled_teleconsult(api: Api, referral_id: int) -> int:
    referrer = api.me(f"{ORAN}.referrer")
    created = api.http.post(
        "/api/teleconsults",
        json={
            "referral_id": referral_id,
            "starts_at": (datetime.now(UTC) + timedelta(minutes=2)).isoformat(),
            "duration_minutes": 30,
            "participants": [referrer["id"]],
        },
        headers=api.as_(f"{APHP}.specialist"),
    )
    assert created.status_code == 201, created.text
    session_id: int = created.json()["id"]
    return session_id


def test_a_teleconsult_is_scheduled_joined_and_the_host_admits_the_referrer(api: Api) -> None:
    referral = api.accepted_referral()
    is_problem(
        api.http.post(
            "/api/teleconsults",
            json={
                "referral_id": referral["id"],
                "starts_at": (datetime.now(UTC) + timedelta(minutes=2)).isoformat(),
                "duration_minutes": 30,
            },
            headers=api.as_(f"{CURIE}.specialist"),
        ),
        404,
    )
    session_id = scheduled_teleconsult(api, referral["id"])
    join = f"/api/teleconsults/{session_id}/join"
    is_problem(api.http.post(join, headers=api.as_(f"{CURIE}.specialist")), 404)
    is_problem(api.http.post(join, headers=api.as_(f"{APHP}.radiologist")), 403)
    host = api.http.post(join, headers=api.as_(f"{APHP}.specialist"))
    guest = api.http.post(join, headers=api.as_(f"{ORAN}.referrer"))
    assert host.status_code == 200 and guest.status_code == 200, (host.text, guest.text)
    assert host.json()["role"] == "host" and guest.json()["waiting"] is True
    assert guest.json()["ws_url"] == f"/ws/teleconsults/{session_id}"

    urls = [url for server in host.json()["ice_servers"] for url in _urls(server)]
    if api.platform.turn_url is None:
        assert urls == [], "jisr run hands out no ICE server unless one is configured"
    else:
        turn = [s for s in host.json()["ice_servers"] if any("turn:" in u for u in _urls(s))]
        assert turn and all(u.startswith(api.platform.turn_url) for u in _urls(turn[0]))
        assert asyncio.run(_turn_allocates(api.platform.turn_url, turn[0])), "coturn refused"

    asyncio.run(_in_the_room(api, session_id, host.json()["token"], guest.json()["token"]))

    forged = guest.json()["token"][:-4] + (
        "AAAA" if guest.json()["token"][-4:] != "AAAA" else "BBBB"
    )
    assert "Signature verification failed" in refused(api, session_id, forged)
    # A page of another site holding a valid token is refused (cross-site WebSocket).
    token = guest.json()["token"]
    assert "origin" in refused(api, session_id, token, "https://evil.example")
    # Signed by the platform's own key: welcome while valid, refused once expired.
    assert asyncio.run(_welcome(api, session_id, resigned(api, token, 60)))["role"] == "participant"
    assert "expired" in refused(api, session_id, resigned(api, token, -600))
    other = scheduled_teleconsult(api, api.accepted_referral()["id"])
    assert "another teleconsultation" in refused(api, other, token)

    # The host ends the call it held; its outcome reaches the referral's timeline.
    end = f"/api/teleconsults/{session_id}/end"
    body = {"outcome": "completed", "note": "Bilan pré-greffe validé."}
    is_problem(api.http.post(end, json=body, headers=api.as_(f"{ORAN}.auditor")), 403)
    ended = api.http.post(end, json=body, headers=api.as_(f"{APHP}.specialist"))
    assert ended.status_code == 200 and ended.json()["status"] == "ended", ended.text
    assert ended.json()["started_at"] is not None, "joining the room started the session"
    event = eventually(
        "the teleconsult's outcome on the referral's timeline",
        lambda: api.event_of(referral["id"], "teleconsult"),
    )
    assert event["data"]["teleconsult_id"] == session_id
    assert event["data"]["outcome"] == "completed" and event["data"]["note"] == body["note"]


async def _turn_allocates(turn_url: str, server: dict[str, Any]) -> bool:
    """A TURN Allocate (RFC 8656) at the platform's coturn with the handed-out credentials."""
    host, port = turn_url.removeprefix("turn:").split("?")[0].rsplit(":", 1)
    try:
        transport, _ = await asyncio.wait_for(
            create_turn_endpoint(
                asyncio.DatagramProtocol,
                (host, int(port)),
                server["username"],
                server["credential"],
            ),
            10,
        )
    except stun.TransactionFailed:
        return False
    transport.close()
    return True


def _urls(server: dict[str, Any]) -> list[str]:
    urls = server["urls"]
    return [urls] if isinstance(urls, str) else list(urls)


# -- 4. operations -------------------------------------------------------------------------


def test_a_request_id_follows_the_request_into_its_task_and_metrics_stay_private(
    api: Api,
) -> None:
    referral = api.accepted_referral()
    session_id = scheduled_teleconsult(api, referral["id"])
    request_id = f"journey-{uuid.uuid4().hex}"
    end = f"/api/teleconsults/{session_id}/end"
    body = {"outcome": "no_show", "note": "Patient absent."}
    is_problem(api.http.post(end, json=body, headers=api.as_(f"{CURIE}.specialist")), 404)
    ended = api.http.post(
        end, json=body, headers=api.as_(f"{APHP}.specialist", **{"X-Request-ID": request_id})
    )
    assert ended.status_code == 200, ended.text
    assert ended.headers["x-request-id"] == request_id
    event = eventually(
        "the teleconsult's outcome on the referral's timeline",
        lambda: api.event_of(referral["id"], "teleconsult"),
    )
    assert event["data"]["teleconsult_id"] == session_id and event["data"]["outcome"] == "no_show"
    # The worker's own log line of the task carries the client's id (in `jisr run` the
    # worker runs inside the one process, whose log is the platform's).
    task_lines = eventually(
        "the worker's log line of the task with the request id",
        lambda: (
            [
                e
                for e in _log_lines(api.platform, request_id)
                if "record_teleconsult_task" in e["message"]
            ]
            or None
        ),
    )
    assert all(e["request_id"] == request_id for e in task_lines)
    if api.platform.kind == "topology":
        assert api.http.get("/metrics").status_code == 404
        for service in ("referral", "imaging", "teleconsult"):
            metrics = api.http.get(f"/_ops/{service}/metrics")
            assert metrics.status_code == 200, metrics.text
            assert "jisr_http_requests_total" in metrics.text
    else:
        # One process on loopback (README: `make run`): its /metrics is the service's own.
        metrics = api.http.get("/metrics")
        assert metrics.status_code == 200 and "jisr_http_requests_total" in metrics.text
        assert api.http.get("/_ops/referral/metrics").status_code == 404


def _log_lines(platform: Platform, request_id: str) -> list[dict[str, Any]]:
    """The JSON log lines of the worker that carry `request_id`."""
    log = platform.log / "worker.log" if platform.log.is_dir() else platform.log
    entries = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{") and request_id in line:
            try:
                entries.append(json.loads(line))
            except ValueError:  # the line being written as we read: the next poll sees it
                continue
    return [e for e in entries if e.get("request_id") == request_id]
