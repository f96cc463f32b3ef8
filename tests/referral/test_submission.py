"""Submission: validation, Idempotency-Key, attachments."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select

from services.referral.referrals.models import Referral
from shared.identity.models import Role
from shared.platform import Platform
from tests.referral.conftest import World

PDF = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


async def count(platform: Platform) -> int:
    async with platform.database.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(Referral)) or 0)


async def test_bad_submissions_are_problems_and_create_nothing(
    world: World, platform: Platform
) -> None:
    w = world
    bad = [
        {"specialty": "astrology"},
        {"urgency": "whenever"},
        {"service": "telepathy"},
        {"patient": {"local_id": "X", "name": "Y", "sex": "Q", "birth_date": "2019-01-01"}},
        {"patient": {"local_id": "X", "name": "Y", "sex": "F", "birth_date": "2999-01-01"}},
        {"patient": {"local_id": "X\u0007Y", "name": "Y", "sex": "F", "birth_date": "2019-01-01"}},
        {"study_uids": ["1.2.840.abc"]},
        {"study_uids": ["1.02.3"]},
        {"question": ""},
        {"languages": ["de"]},
        {"extra_field": True},
    ]
    for override in bad:
        response = await w.submit(**override)
        assert response.status_code == 422, override
        assert response.headers["content-type"].startswith("application/problem+json")
    garbage = await w.client.post(
        "/api/referrals",
        content=b"{not json",
        headers={**w.h(w.referrer), "content-type": "application/json"},
    )
    assert garbage.status_code == 422
    assert await count(platform) == 0


async def test_a_retried_submission_returns_the_first_referral(
    world: World, platform: Platform
) -> None:
    w = world
    headers = {**w.h(w.referrer), "Idempotency-Key": "retry-7f3a"}
    body = {
        "patient": {"local_id": "OUA-1", "name": "Amel R", "sex": "F", "birth_date": "2018-03-03"},
        "question": "q",
        "summary": "s",
        "specialty": "paediatric_surgery",
    }
    first = await w.client.post("/api/referrals", json=body, headers=headers)
    again = await w.client.post("/api/referrals", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert await count(platform) == 1
    changed = await w.client.post(
        "/api/referrals", json={**body, "question": "other"}, headers=headers
    )
    assert changed.status_code == 422
    other_user = await w.factory.user(w.ouargla, Role.REFERRING_PHYSICIAN)
    theirs = await w.client.post(
        "/api/referrals", json=body, headers={**w.h(other_user), "Idempotency-Key": "retry-7f3a"}
    )
    assert (
        theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]
    )  # keys belong to their caller
    assert await count(platform) == 2


async def test_concurrent_duplicates_make_one_referral(world: World, platform: Platform) -> None:
    w = world
    headers = {**w.h(w.referrer), "Idempotency-Key": "double-click"}
    body = {
        "patient": {"local_id": "OUA-9", "name": "Nour T", "sex": "F", "birth_date": "2016-06-06"},
        "question": "q",
        "summary": "s",
        "specialty": "paediatric_surgery",
    }
    results = await asyncio.gather(
        *(w.client.post("/api/referrals", json=body, headers=headers) for _ in range(4))
    )
    codes = sorted(r.status_code for r in results)
    assert codes.count(201) >= 1 and set(codes) <= {201, 409}
    assert await count(platform) == 1
    ids = {r.json()["id"] for r in results if r.status_code == 201}
    assert len(ids) == 1


async def test_a_failed_submission_frees_its_key(world: World, platform: Platform) -> None:
    w = world
    headers = {**w.h(w.referrer), "Idempotency-Key": "nobody-takes-cardiology"}
    body = {
        "patient": {"local_id": "OUA-5", "name": "Ali B", "sex": "M", "birth_date": "2016-06-06"},
        "question": "q",
        "summary": "s",
        "specialty": "cardiology",
    }
    assert (await w.client.post("/api/referrals", json=body, headers=headers)).status_code == 403
    assert (
        await w.client.post("/api/referrals", json=body, headers=headers)
    ).status_code == 403  # not 409
    assert (
        await w.client.post(
            "/api/referrals", json=body, headers={**headers, "Idempotency-Key": " " * 300}
        )
    ).status_code == 400


async def test_attachments_are_checked_by_content_and_kept_home_when_they_identify(
    world: World, client: httpx.AsyncClient
) -> None:
    w = world
    rid = (await w.submit()).json()["id"]
    url = f"/api/referrals/{rid}/attachments"
    pdf = await w.client.post(
        url, headers=w.h(w.referrer), files={"file": ("../../etc/passwd.pdf", PDF, "text/plain")}
    )
    assert pdf.status_code == 201, pdf.text
    assert pdf.json()["media_type"] == "application/pdf" and pdf.json()["filename"] == "passwd.pdf"
    image = await w.client.post(
        url,
        headers=w.h(w.referrer),
        data={"contains_identifiers": "false"},
        files={"file": ("scan.png", PNG, "image/png")},
    )
    assert image.status_code == 201 and image.json()["contains_identifiers"] is False
    fake = await w.client.post(
        url,
        headers=w.h(w.referrer),
        files={"file": ("x.pdf", b"MZ\x90\x00 not a pdf", "application/pdf")},
    )
    assert fake.status_code == 422
    empty = await w.client.post(
        url, headers=w.h(w.referrer), files={"file": ("x.pdf", b"", "application/pdf")}
    )
    assert empty.status_code == 422
    no_file = await w.client.post(url, headers=w.h(w.referrer), data={"x": "y"})
    assert no_file.status_code == 400
    not_multipart = await w.client.post(url, headers=w.h(w.referrer), content=b"raw")
    assert not_multipart.status_code == 400
    by_provider = await w.client.post(
        url, headers=w.h(w.setif_specialist), files={"file": ("a.pdf", PDF, "application/pdf")}
    )
    assert by_provider.status_code == 403
    mine = (await w.client.get(url, headers=w.h(w.referrer))).json()
    assert len(mine) == 2
    theirs = (await w.client.get(url, headers=w.h(w.setif_specialist))).json()
    assert [a["filename"] for a in theirs] == [
        "scan.png"
    ]  # pseudonymised line: identifying files stay home
    blocked = await w.client.get(f"{url}/{pdf.json()['id']}", headers=w.h(w.setif_specialist))
    assert blocked.status_code == 403 and blocked.json()["rule"] == "data_terms"
    allowed = await w.client.get(f"{url}/{image.json()['id']}", headers=w.h(w.setif_specialist))
    assert allowed.status_code == 200 and allowed.content == PNG
    own = await w.client.get(f"{url}/{pdf.json()['id']}", headers=w.h(w.referrer))
    assert own.content == PDF


async def test_an_oversized_attachment_is_refused(world: World, platform: Platform) -> None:
    w = world
    rid = (await w.submit()).json()["id"]
    big = b"%PDF-1.7\n" + b"0" * (platform.settings.attachment_max_bytes + 1)
    response = await w.client.post(
        f"/api/referrals/{rid}/attachments",
        headers=w.h(w.referrer),
        files={"file": ("big.pdf", big, "application/pdf")},
    )
    assert response.status_code == 413
