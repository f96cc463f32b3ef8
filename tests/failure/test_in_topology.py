"""The failure tests in the production topology (`jisr run-services`), through nginx.

The topology runs on a PostgreSQL cluster of this module's own (so it may be
restarted) and on Redis databases of its own; everything else is what `jisr
run-services` starts: two Orthancs, coturn, the three services, the Celery
worker (prefork, late acks) and beat, nginx. Two failures:

- the worker's pool processes are SIGKILLed while it forwards a share to the
  partner's Orthanc (a relay holds the answer to the third of five instances, so
  the partner holds one the platform has not recorded): the task is requeued at
  once (reject on worker lost), the worker forks new pool processes, and the
  partner ends with every instance, each stored once;
- PostgreSQL restarts during a burst of submissions by Oran's referrer: every
  referral a client saw accepted exists once, and clients got 503s with
  Retry-After, never a 500.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from jisr.topology import Topology, running
from tests.failure.burst import DEADLINE, Burst
from tests.failure.gate import running_gate
from tests.failure.parts import PgCluster, wait_until
from tests.topology import require_topology

REDIS_DB = int(os.environ.get("JISR_TEST_FAILURE_REDIS_DB", "8"))
"""Broker and signalling on 8 and 9: tests/topology.py's modules use 10 and 11."""
INSTANCES, HOLD_AT = 5, 3
PASSWORD = "jisr-demo"


@pytest.fixture(scope="module")
def topology(cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """The topology on the module's own PostgreSQL cluster (conftest's `cluster`)."""
    require_topology()
    with running(
        tmp_path_factory.mktemp("topology"),
        database="jisr_failure",
        postgres=cluster.dsn(),
        redis_db=REDIS_DB,
        drop_databases=False,  # the cluster goes as a whole
    ) as started:
        yield started


def bearer(t: Topology, username: str) -> dict[str, str]:
    answer = httpx.post(
        t.proxy_url + "/auth/token", data={"username": username, "password": PASSWORD}
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": "Bearer " + answer.json()["access_token"]}


def referral_body(key: str, study_uids: list[str] | None = None) -> dict[str, Any]:
    return {
        "patient": {
            "local_id": f"ORAN-{key}",
            "name": "Amina Belkacem",
            "sex": "F",
            "birth_date": "1971-03-02",
        },
        "question": f"Graft dysfunction after kidney transplant ({key})?",
        "summary": "Creatinine rising over six weeks.",
        "specialty": "nephrology",
        "urgency": "routine",
        "service": "second_opinion",
        "languages": ["fr"],
        **({"study_uids": study_uids} if study_uids else {}),
    }


def study(count: int) -> tuple[list[bytes], str]:
    """`count` instances of one new study (CT_small with new UIDs)."""
    study_uid, series_uid = generate_uid(), generate_uid()
    files = []
    for _ in range(count):
        ds = dcmread(str(get_testdata_file("CT_small.dcm")))
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = (
            study_uid,
            series_uid,
            generate_uid(),
        )
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        files.append(out.getvalue())
    return files, str(study_uid)


def stow(t: Topology, headers: dict[str, str], files: list[bytes]) -> None:
    boundary = uuid.uuid4().hex
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"
            for data in files
        )
        + f"--{boundary}--\r\n".encode()
    )
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    stored = httpx.post(
        t.proxy_url + "/dicomweb/studies",
        content=body,
        headers={**headers, "Content-Type": content_type},
        timeout=60,
    )
    assert stored.status_code == 200, stored.text


async def set_store(t: Topology, institution: str, url: str) -> None:
    conn = await asyncpg.connect(t.database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(
            "UPDATE institutions SET imaging_store = $1 WHERE code = $2", url, institution
        )
    finally:
        await conn.close()


def pool_processes(pid: int) -> list[int]:
    children = f"/proc/{pid}/task/{pid}/children"
    with open(children) as found:
        return [int(child) for child in found.read().split()]


def partner_instances(t: Topology) -> list[str]:
    partner = t.orthancs["partner"]
    found: list[str] = httpx.get(
        f"{partner.url}/instances", auth=(partner.username, partner.password)
    ).json()
    return found


def test_the_workers_pool_killed_midway_through_a_forwarding_sends_nothing_twice(
    topology: Topology,
) -> None:
    t = topology
    origin, referrer = bearer(t, "oran.radiologist"), bearer(t, "oran.referrer")
    files, study_uid = study(INSTANCES)
    stow(t, origin, files)
    referral = httpx.post(
        t.proxy_url + "/api/referrals",
        json=referral_body("forward", [study_uid]),
        headers={**referrer, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert referral.status_code == 201, referral.text
    share = httpx.post(
        t.proxy_url + "/api/imaging/shares",
        json={"study_uid": study_uid, "referral_id": referral.json()["id"]},
        headers=origin,
        timeout=60,
    )
    assert share.status_code == 201, share.text
    share_id = share.json()["id"]
    before = len(partner_instances(t))
    worker = t.processes["worker"]
    assert worker.pid is not None

    with running_gate(t.orthancs["partner"].url, hold_at=HOLD_AT) as gate:
        asyncio.run(set_store(t, "FR-PARIS-APHP", gate.url))
        stranger = httpx.post(
            f"{t.proxy_url}/api/imaging/shares/{share_id}/forward",
            headers=bearer(t, "aphp.specialist"),
        )
        assert stranger.status_code == 403, stranger.text
        started = httpx.post(f"{t.proxy_url}/api/imaging/shares/{share_id}/forward", headers=origin)
        assert started.status_code == 202, started.text
        assert gate.held.wait(DEADLINE), worker.tail()
        assert len(partner_instances(t)) - before == HOLD_AT  # some, not all

        killed = pool_processes(worker.pid)
        for child in killed:
            os.kill(child, signal.SIGKILL)
        gate.release.set()

        def done() -> bool:
            answer = httpx.get(
                f"{t.proxy_url}/api/imaging/shares/{share_id}/forwarding", headers=origin
            )
            return bool(answer.json()["state"] == "done")

        wait_until(done, "the forwarding done", DEADLINE, 0.1)
    asyncio.run(set_store(t, "FR-PARIS-APHP", t.orthancs["partner"].url))

    body = httpx.get(
        f"{t.proxy_url}/api/imaging/shares/{share_id}/forwarding", headers=origin
    ).json()
    assert (body["sent"], body["total"]) == (INSTANCES, INSTANCES)
    assert len(partner_instances(t)) - before == INSTANCES
    assert Counter(status for _, status in gate.stored) == {"Success": INSTANCES}
    assert worker.alive and not set(killed) & set(pool_processes(worker.pid))
    assert "WorkerLostError" in worker.tail(400)


async def test_a_postgres_restart_behind_the_proxy_loses_no_accepted_referral(
    topology: Topology, cluster: PgCluster
) -> None:
    t = topology
    referrer = bearer(t, "oran.referrer")
    run = uuid.uuid4().hex[:6]
    keys = [f"{run}-{n}" for n in range(30)]
    async with httpx.AsyncClient(base_url=t.proxy_url, timeout=30) as http:
        burst = Burst(http, referrer, lambda key: referral_body(key))
        await burst.around(keys, 6, lambda: asyncio.to_thread(cluster.restart))

        for key, accepted in burst.accepted.items():
            replay = await http.post(
                "/api/referrals",
                json=referral_body(key),
                headers={**referrer, "Idempotency-Key": key},
            )
            assert replay.status_code == 201 and replay.json()["id"] == accepted["id"], replay.text
    burst.clients_got_retryable_problems()
    conn = await asyncpg.connect(t.database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        questions = Counter(
            row["question"]
            for row in await conn.fetch(
                "SELECT question FROM referrals WHERE question = ANY($1::text[])",
                [referral_body(key)["question"] for key in keys],
            )
        )
    finally:
        await conn.close()
    assert questions == Counter(referral_body(key)["question"] for key in keys)
    # Every service answers again once the database is back.
    for service in ("referral", "imaging", "teleconsult"):
        await asyncio.to_thread(t.wait_ready, service, 60.0)
