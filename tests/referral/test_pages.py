"""The pages over HTTP, on SQLite and PostgreSQL: sign-in cookie, redirects, CSRF, visibility, forms."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from markupsafe import escape
from sqlalchemy import select

from services.referral.pages import forms
from services.referral.pages import referral as referral_page
from services.referral.pages.chart import Bar, bars_svg, nice_ceiling
from services.referral.referrals import tasks
from services.referral.referrals.models import Referral
from services.referral.routing import WEIGHTS
from services.referral.workflow import Status
from shared import web_session as auth
from shared.db import utcnow
from shared.entitlements.model import Identification
from shared.i18n import LANGUAGES, translate
from shared.identity.models import User
from shared.platform import Platform
from tests.factories import PASSWORD
from tests.referral.conftest import World

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
Open = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[Open]:
    """Opens clients of the app that keep their own cookies, like separate browsers."""
    async with AsyncExitStack() as stack:

        async def open_(base_url: str = "http://jisr.test") -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=app)
            client = httpx.AsyncClient(transport=transport, base_url=base_url)
            return await stack.enter_async_context(client)

        yield open_


async def sign_in(
    client: httpx.AsyncClient, user: User, next_path: str = "/", *, password: str = PASSWORD
) -> httpx.Response:
    form = await client.get("/login", params={"next": next_path})
    assert form.status_code == 200, form.text
    found = CSRF.search(form.text)
    assert found is not None
    return await client.post(
        "/login",
        data={
            "username": user.username,
            "password": password,
            "next": next_path,
            "csrf_token": found.group(1),
        },
    )


async def signed_in(browser: Open, user: User) -> httpx.AsyncClient:
    client = await browser()
    response = await sign_in(client, user)
    assert response.status_code == 303, response.text
    return client


def words(key: str, lang: str, **params: object) -> str:
    """A catalogue message as the HTML shows it (escaped)."""
    return str(escape(translate(key, lang, **params)))


def csrf_of(client: httpx.AsyncClient) -> str:
    return str(client.cookies.get(auth.CSRF_COOKIE))


async def post(client: httpx.AsyncClient, url: str, data: dict[str, object]) -> httpx.Response:
    return await client.post(url, data={**data, "csrf_token": csrf_of(client)})


def case(**overrides: object) -> dict[str, object]:
    form: dict[str, object] = {
        "patient_local_id": "OUA-2026-0042",
        "patient_name": "Yacine Benali",
        "patient_sex": "M",
        "patient_birth_date": "2019-04-12",
        "question": "Hypospadias repair: surgical indication and timing?",
        "summary": "Boy of 7, distal hypospadias, no urinary symptoms.",
        "specialty": "paediatric_surgery",
        "urgency": "routine",
        "service": "second_opinion",
        "languages": ["fr"],
    }
    form.update(overrides)
    return form


async def test_signing_in_keeps_the_token_in_an_httponly_strict_cookie(
    world: World, browser: Open
) -> None:
    client = await browser()
    response = await sign_in(client, world.referrer, "/outbox?urgency=urgent")
    assert response.status_code == 303
    assert response.headers["location"] == "/outbox?urgency=urgent"
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("jisr_session=")
    )
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
    page = await client.get("/outbox")
    assert page.status_code == 200
    assert words("box.outbox.title", "fr") in page.text  # the referrer's first language
    assert '<html lang="fr" dir="ltr">' in page.text

    over_tls = await browser("https://jisr.test")
    secure = await sign_in(over_tls, world.referrer)
    assert any(
        c.startswith("jisr_session=") and "Secure" in c
        for c in secure.headers.get_list("set-cookie")
    )


async def test_a_wrong_password_shows_the_form_again_with_no_cookie(
    world: World, browser: Open
) -> None:
    client = await browser()
    response = await sign_in(client, world.referrer, password="not-the-password")
    assert response.status_code == 401
    assert words("login.failed", "en") in response.text
    assert auth.SESSION_COOKIE not in client.cookies


async def test_a_page_without_the_cookie_sends_the_browser_to_sign_in(
    world: World, browser: Open
) -> None:
    client = await browser()
    response = await client.get("/referrals/7?tab=timeline")
    assert response.status_code == 303
    target = urlsplit(response.headers["location"])
    assert target.path == "/login"
    assert parse_qs(target.query)["next"] == ["/referrals/7?tab=timeline"]
    for path in ("/", "/inbox", "/outbox", "/referrals/new", "/reports/activity"):
        assert (await client.get(path)).headers["location"].startswith("/login")
    client.cookies.set(auth.SESSION_COOKIE, "not-a-token", domain="jisr.test")
    forged = await client.get("/inbox")
    assert forged.status_code == 303 and forged.headers["location"] == "/login?next=%2Finbox"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/inbox",
        "/\\evil.example",
        "javascript:alert(1)",
        "http:/evil.example",
        "inbox",
        "/inbox\r\nSet-Cookie: x=1",
    ],
)
async def test_signing_in_never_redirects_to_another_site(
    world: World, browser: Open, target: str
) -> None:
    client = await browser()
    response = await sign_in(client, world.referrer, target)
    assert response.status_code == 303
    assert response.headers["location"] == "/"


def test_next_keeps_local_paths_only() -> None:
    assert auth.safe_next("/referrals/3?lang=ar") == "/referrals/3?lang=ar"
    for bad in (None, "", "//x.example", "/\\x.example", "https://x.example", "x", "/a\nb"):
        assert auth.safe_next(bad) == "/"


async def test_a_form_without_its_csrf_token_is_refused(world: World, browser: Open) -> None:
    client = await signed_in(browser, world.referrer)
    missing = await client.post("/referrals/new", data=case())
    assert missing.status_code == 403
    assert words("error.csrf.title", "fr") in missing.text
    wrong = await client.post("/referrals/new", data={**case(), "csrf_token": "guess"})
    assert wrong.status_code == 403
    outbox = await world.client.get(
        "/api/referrals", params={"box": "outbox"}, headers=world.h(world.referrer)
    )
    assert outbox.json()["pagination"]["total_count"] == 0
    stranger = await browser()
    anonymous = await stranger.post(
        "/login", data={"username": world.referrer.username, "password": PASSWORD}
    )
    assert anonymous.status_code == 403
    assert auth.SESSION_COOKIE not in stranger.cookies


async def test_a_third_institution_gets_the_not_found_page(world: World, browser: Open) -> None:
    submitted = await world.submit()
    rid = submitted.json()["id"]
    client = await signed_in(browser, world.stranger)
    hidden = await client.get(f"/referrals/{rid}")
    missing = await client.get("/referrals/999999")
    assert hidden.status_code == missing.status_code == 404
    same = hidden.text.replace(f"/referrals/{rid}", "/referrals/N")
    assert same == missing.text.replace("/referrals/999999", "/referrals/N")
    assert "Yacine" not in hidden.text
    acted = await post(client, f"/referrals/{rid}/accept", {})
    assert acted.status_code == 404
    assert (await client.get("/referrals/not-a-number")).status_code == 404


async def test_an_invalid_case_comes_back_with_its_errors_and_nothing_is_created(
    world: World, browser: Open
) -> None:
    client = await signed_in(browser, world.referrer)
    response = await post(
        client,
        "/referrals/new",
        case(patient_name="  ", patient_birth_date="2999-01-01", specialty="", languages=["xx"]),
    )
    assert response.status_code == 422
    text = response.text
    assert words("form.error.summary", "fr") in text
    assert words("form.error.required", "fr") in text
    assert words("form.error.past", "fr") in text
    assert words("form.error.choice", "fr") in text
    assert 'value="OUA-2026-0042"' in text  # what was typed is kept
    assert "Hypospadias repair: surgical indication and timing?" in text
    assert 'id="err-patient_name"' in text and 'id="err-specialty"' in text
    outbox = await world.client.get(
        "/api/referrals", params={"box": "outbox"}, headers=world.h(world.referrer)
    )
    assert outbox.json()["pagination"]["total_count"] == 0


async def test_a_case_goes_through_the_pages_and_a_refusal_is_a_message(
    world: World, browser: Open
) -> None:
    referrer = await signed_in(browser, world.referrer)
    sent = await post(referrer, "/referrals/new", {**case(), "form_key": "k1"})
    assert sent.status_code == 303, sent.text
    location = sent.headers["location"]
    rid = int(location.rsplit("/", 1)[1])
    again = await post(referrer, "/referrals/new", {**case(), "form_key": "k1"})
    assert again.headers["location"] == location  # the same form twice makes one referral
    page = await referrer.get(location)
    assert words("flash.submitted", "fr", id=rid, provider=world.setif.name_fr) in page.text
    assert words("routing.domestic", "fr") in page.text  # reasons in the page language
    assert "Yacine Benali" in page.text

    specialist = await signed_in(browser, world.setif_specialist)
    inbox = await specialist.get("/inbox")
    assert f'href="/referrals/{rid}"' in inbox.text
    seen = await specialist.get(f"/referrals/{rid}")
    assert "Yacine" not in seen.text  # a partner sees the pseudonym
    assert f'action="/referrals/{rid}/accept"' in seen.text
    accepted = await post(specialist, f"/referrals/{rid}/accept", {})
    assert accepted.status_code == 303
    twice = await post(specialist, f"/referrals/{rid}/accept", {})
    assert twice.status_code == 409
    assert words("error.rule.invalid_transition", "fr") in twice.text
    empty = await post(specialist, f"/referrals/{rid}/complete", {"findings": "x"})
    assert empty.status_code == 422
    assert words("form.error.required", "fr") in empty.text
    scheduled = await post(
        specialist, f"/referrals/{rid}/schedule", {"kind": "teleconsult", "at": "2026-12-03T09:30"}
    )
    assert scheduled.status_code == 303
    shown = await specialist.get(f"/referrals/{rid}")
    assert "2026-12-03 09:30 CET" in shown.text  # wall-clock time where Sétif works

    outsider = await signed_in(browser, world.aphp_specialist)
    assert (await outsider.get(f"/referrals/{rid}")).status_code == 404


async def test_a_refused_submission_is_a_message_with_its_reasons_and_keeps_nothing(
    world: World, browser: Open
) -> None:
    client = await signed_in(browser, world.referrer)
    refused = await post(client, "/referrals/new", case(service="teleconsultation"))
    assert refused.status_code == 403
    assert words("error.rule.no_eligible_provider", "fr") in refused.text
    assert 'class="reasons flash-reasons"' in refused.text  # each partner's refusing rule
    assert "Hypospadias repair: surgical indication and timing?" in refused.text
    outbox = await world.client.get(
        "/api/referrals", params={"box": "outbox"}, headers=world.h(world.referrer)
    )
    assert outbox.json()["pagination"]["total_count"] == 0


async def test_questions_answers_and_cancellation_through_the_pages(
    world: World, browser: Open
) -> None:
    rid = (await world.submit()).json()["id"]
    specialist = await signed_in(browser, world.setif_specialist)
    asked = await post(
        specialist, f"/referrals/{rid}/request-info", {"question": "Échographie rénale ?"}
    )
    assert asked.status_code == 303
    referrer = await signed_in(browser, world.referrer)
    page = await referrer.get(f"/referrals/{rid}")
    assert 'class="asked" dir="auto">Échographie rénale ?<' in page.text
    blank = await post(referrer, f"/referrals/{rid}/provide-info", {"answer": " "})
    assert blank.status_code == 422 and 'id="err-answer"' in blank.text
    answered = await post(referrer, f"/referrals/{rid}/provide-info", {"answer": "Normale."})
    assert answered.status_code == 303
    page = await referrer.get(f"/referrals/{rid}")
    assert words("flash.done.provide-info", "fr") in page.text
    assert words("event.info_provided", "fr", answer="Normale.") in page.text
    cancelled = await post(referrer, f"/referrals/{rid}/cancel", {"reason": "Opéré ailleurs."})
    assert cancelled.status_code == 303
    late = await post(specialist, f"/referrals/{rid}/accept", {})
    assert late.status_code in (403, 409)
    assert 'class="flash flash-error"' in late.text
    assert words("status.cancelled", "fr") in late.text


async def test_worklists_put_the_urgent_first_mark_the_overdue_and_filter(
    world: World, browser: Open
) -> None:
    for urgency in ("routine", "emergency", "urgent"):
        await world.submit(urgency=urgency, question=f"Question {urgency}")
    async with world.factory.platform.database.transaction() as session:
        late = await session.scalar(select(Referral).where(Referral.urgency == "routine"))
        assert late is not None
        late.due_at = utcnow() - timedelta(hours=1)
    client = await signed_in(browser, world.setif_specialist)
    inbox = (await client.get("/inbox")).text
    order = [inbox.index(f"Question {u}") for u in ("emergency", "urgent", "routine")]
    assert order == sorted(order)
    assert inbox.count('class="badge badge-overdue"') == 1
    assert words("pager.page", "fr", page=1, pages=1, total=3) in inbox
    only = (await client.get("/inbox", params={"urgency": "urgent"})).text
    assert "Question urgent" in only and "Question routine" not in only
    none = (await client.get("/inbox", params={"status": "closed", "page": "x"})).text
    assert words("box.empty", "fr") in none


async def test_the_language_switch_is_kept_and_arabic_is_right_to_left(
    world: World, browser: Open
) -> None:
    client = await signed_in(browser, world.setif_specialist)
    arabic = await client.get("/inbox", params={"lang": "ar"})
    assert '<html lang="ar" dir="rtl">' in arabic.text
    assert words("box.inbox.title", "ar") in arabic.text
    assert any(c.startswith("jisr_lang=ar") for c in arabic.headers.get_list("set-cookie"))
    kept = await client.get("/inbox")
    assert '<html lang="ar" dir="rtl">' in kept.text
    english = await client.get("/inbox", params={"lang": "en"})
    assert '<html lang="en" dir="ltr">' in english.text


async def test_the_activity_page_draws_the_months_and_refuses_other_roles(
    world: World, browser: Open
) -> None:
    rid = (await world.submit()).json()["id"]
    await world.act(world.setif_specialist, rid, "accept")
    coordinator = await signed_in(browser, world.origin_coordinator)
    choose = await coordinator.get("/reports/activity")
    assert choose.status_code == 200 and "AG-TW-OUA-SET" in choose.text
    agreement = re.search(r'<option value="(\d+)">AG-TW-OUA-SET<', choose.text)
    assert agreement is not None
    shown = await coordinator.get(
        "/reports/activity", params={"agreement_id": agreement.group(1), "lang": "ar"}
    )
    assert shown.status_code == 200
    assert "<svg" in shown.text and 'class="s-consumed"' in shown.text
    assert words("activity.chart", "ar", code="AG-TW-OUA-SET") in shown.text
    referrer = await signed_in(browser, world.referrer)
    refused = await referrer.get("/reports/activity", params={"agreement_id": agreement.group(1)})
    assert refused.status_code == 403
    assert words("error.rule.role_required", "fr") in refused.text


def test_the_chart_runs_right_to_left_in_arabic() -> None:
    bars = [Bar("Jan", "2026", (1, 0, 0)), Bar("Feb", "2026", (0, 0, 3))]
    ltr = bars_svg(bars, [("a", "A"), ("b", "B"), ("c", "C")], title="t")
    rtl = bars_svg(bars, [("a", "A"), ("b", "B"), ("c", "C")], title="t", rtl=True)
    assert ltr.index(">Jan<") < ltr.index(">Feb<")
    x_jan = float(re.findall(r'class="month" x="([\d.]+)"', rtl)[0])
    x_feb = float(re.findall(r'class="month" x="([\d.]+)"', rtl)[1])
    assert x_jan > x_feb
    assert [nice_ceiling(n) for n in (0, 1, 3, 7, 12, 51)] == [1, 1, 5, 10, 20, 100]
    assert "<script" not in bars_svg([Bar("<script>", "x", (1,))], [("a", "A")], title="<b>")


def test_every_word_the_pages_name_is_in_the_catalogue() -> None:
    templates = Path(auth.__file__).with_name("templates")
    used = set()
    for template in templates.glob("*.html"):
        used |= set(re.findall(r"""\bt\(["']([a-z_.\-]+)["']\s*[,)]""", template.read_text()))
    used |= {f"status.{s.value}" for s in Status} | {f"lang.{code}" for code in LANGUAGES}
    for action in forms.BODIES:
        used |= {f"action.{action}.title", f"action.{action}.submit", f"flash.done.{action}"}
    used |= {f"month.{n}" for n in range(1, 13)} | {f"routing.part.{p}" for p in WEIGHTS}
    used |= {f"event.{kind}" for kind in referral_page.KNOWN}
    used |= {f"box.{box}.{part}" for box in ("inbox", "outbox") for part in ("title", "intro")}
    used |= {f"referral.side.{side}" for side in ("origin", "provider", "observer")}
    used |= {f"patient.identification.{i.value}" for i in Identification}
    used |= {f"sex.{code}" for code in ("F", "M", "O", "U")}
    folder = Path(translate.__code__.co_filename).parent
    known: set[str] = set()
    for catalogue in (folder / "en.json", folder / "pages" / "en.json"):
        known |= set(json.loads(catalogue.read_text(encoding="utf-8")))
    missing = {k for k in used if k not in known}
    assert not missing


async def test_the_timeline_shows_a_teleconsult_and_an_imaging_report_in_the_readers_language(
    world: World, browser: Open, platform: Platform
) -> None:
    rid = (await world.submit()).json()["id"]
    ended = utcnow()
    await tasks.record_teleconsult(
        platform,
        referral_id=rid,
        teleconsult_id=7,
        summary={
            "outcome": "completed",
            "note": "Chirurgie en mars.",
            "started_at": (ended - timedelta(minutes=25)).isoformat(),
            "ended_at": ended.isoformat(),
            "duration_s": 25 * 60,
            "actor_name": world.setif_specialist.display_name,
            "institution_id": world.setif.id,
        },
    )
    await tasks.record_imaging_report(
        platform,
        referral_id=rid,
        share_id=3,
        report={
            "report_id": 11,
            "author_name": world.setif_specialist.display_name,
            "institution_id": world.setif.id,
            "signed_at": ended.isoformat(),
            "impression": "Pas de lésion osseuse.",
        },
    )
    referrer = await signed_in(browser, world.referrer)
    page = (await referrer.get(f"/referrals/{rid}")).text
    outcome = translate("teleconsult.outcome.completed", "fr")
    duration = translate("teleconsult.minutes", "fr", minutes=25)
    assert words("event.teleconsult", "fr", outcome=outcome, duration=duration) in page
    assert "Chirurgie en mars." in page
    assert words("event.imaging_report", "fr") in page and "Pas de lésion osseuse." in page
    # A third institution sees no timeline at all.
    stranger = await signed_in(browser, world.stranger)
    assert (await stranger.get(f"/referrals/{rid}")).status_code == 404
