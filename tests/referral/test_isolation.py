"""A third institution sees nothing of a referral: every route refuses it, and the refusal is audited."""

from __future__ import annotations

from sqlalchemy import select

from shared.audit import AuditEvent
from shared.platform import Platform
from tests.referral.conftest import World


async def test_a_third_institution_is_refused_on_every_referral_route(
    world: World, platform: Platform
) -> None:
    w = world
    rid = (await w.submit()).json()["id"]
    h = w.h(w.stranger)
    reads = [
        f"/api/referrals/{rid}",
        f"/api/referrals/{rid}/history",
        f"/api/referrals/{rid}/report",
        f"/api/referrals/{rid}/attachments",
        f"/api/referrals/{rid}/attachments/1",
    ]
    for url in reads:
        response = await w.client.get(url, headers=h)
        assert response.status_code == 404, url
    missing = await w.client.get("/api/referrals/999999", headers=h)
    seen = await w.client.get(f"/api/referrals/{rid}", headers=h)
    strip = ("instance", "request_id", "detail")
    assert {k: v for k, v in seen.json().items() if k not in strip} == {
        k: v for k, v in missing.json().items() if k not in strip
    }
    actions = {
        "accept": None,
        "decline": {"reason": "x"},
        "request-info": {"question": "x"},
        "provide-info": {"answer": "x"},
        "schedule": {"kind": "transfer", "at": "2027-01-01T10:00:00Z"},
        "complete": {"findings": "x", "recommendations": "x"},
        "cancel": {"reason": "x"},
        "reroute": {"provider_id": w.aphp.id, "reason": "x"},
        "report/acknowledge": {"outcome": "stable"},
        "submit": None,
    }
    for action, body in actions.items():
        response = await w.act(w.stranger, rid, action, body)
        assert response.status_code == 404, action
    upload = await w.client.post(
        f"/api/referrals/{rid}/attachments",
        headers=h,
        files={"file": ("a.pdf", b"%PDF-1.4 x", "application/pdf")},
    )
    assert upload.status_code == 404
    for box in ("inbox", "outbox", "all"):
        listed = await w.client.get(f"/api/referrals?box={box}", headers=h)
        assert listed.json()["items"] == [], box
    async with platform.database.transaction() as session:
        refusals = list(
            await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.actor_id == w.stranger.id, AuditEvent.outcome == "refused"
                )
            )
        )
    assert len(refusals) >= len(reads) + len(actions)
    assert {e.rule for e in refusals} == {"not_visible"}
    for response in [await w.client.get(f"/api/referrals/{rid}")]:
        assert response.status_code == 401


async def test_the_provider_side_reads_are_audited_as_data_crossing_the_border(
    world: World, platform: Platform
) -> None:
    w = world
    rid = (await w.submit()).json()["id"]
    await w.client.get(f"/api/referrals/{rid}", headers=w.h(w.setif_specialist))
    await w.client.get(f"/api/referrals/{rid}", headers=w.h(w.referrer))
    async with platform.database.transaction() as session:
        reads = list(
            await session.scalars(select(AuditEvent).where(AuditEvent.action == "referral.read"))
        )
    assert [(e.actor_id, e.outcome, e.details["identification"]) for e in reads] == [
        (w.setif_specialist.id, "allowed", "pseudonymised")
    ]
    assert reads[0].counterpart_id == w.ouargla.id


async def test_roles_without_a_part_in_referrals_are_refused(world: World) -> None:
    w = world
    from shared.identity.models import Role

    auditor = await w.factory.user(w.ouargla, Role.AUDITOR)
    response = await w.submit(auditor)
    assert response.status_code == 403 and response.json()["rule"] == "role_required"
    rid = (await w.submit()).json()["id"]
    setif_auditor = await w.factory.user(w.setif, Role.AUDITOR)
    refused = await w.act(setif_auditor, rid, "accept")
    assert refused.status_code == 403 and refused.json()["rule"] == "role_required"
