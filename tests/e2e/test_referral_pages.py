"""The referral pages in headless Chromium against the real platform, in French and in Arabic.

Ouargla's referring physician sends a paediatric surgery case; the twinning
with Sétif routes it there, with its reasons; Sétif's specialist accepts,
schedules a teleconsultation and reports back; the referrer reads the report
and closes the loop with the patient's outcome. A declined case goes to the
next entitled provider, and once nobody is left it closes without an answer.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from shared.i18n import translate
from tests.e2e.conftest import DEMO_PASSWORD, Platform

DEMO = json.loads((Path(__file__).parents[2] / "jisr" / "demo.json").read_text(encoding="utf-8"))
NAMES = {i["code"]: i["names"] for i in DEMO["institutions"]}
SLUGS = {i["code"]: i["slug"] for i in DEMO["institutions"]}
SETIF = "DZ-SETIF-CHU"


def sign_in(browser: Any, base_url: str, username: str, lang: str) -> Any:
    """A new browser session: sign in, then pick the language with the switch."""
    context = browser.new_context(base_url=base_url, locale="en-US")
    page = context.new_page()
    page.goto("/login")
    page.fill("#f-username", username)
    page.fill("#f-password", DEMO_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/(inbox|outbox)$"))
    page.click(f'nav.langs a[lang="{lang}"]')
    page.wait_for_url(re.compile(rf"lang={lang}$"))
    assert page.locator("html").get_attribute("lang") == lang
    assert page.locator("html").get_attribute("dir") == ("rtl" if lang == "ar" else "ltr")
    return page


def text(page: Any, selector: str) -> str:
    return str(page.locator(selector).inner_text())


def submit_case(page: Any, lang: str, *, local_id: str, service: str, specialty: str) -> int:
    t = _words(lang)
    page.click(f"nav.mainnav >> text={t('nav.new')}")
    page.wait_for_url("**/referrals/new")
    assert text(page, "h1") == t("new.title")
    page.fill("#f-patient_local_id", local_id)
    page.fill("#f-patient_name", "Yacine Benali")
    page.select_option("#f-patient_sex", "M")
    page.fill("#f-patient_birth_date", "2019-04-12")
    page.select_option("#f-specialty", specialty)
    page.select_option("#f-service", service)
    page.select_option("#f-urgency", "urgent")
    page.fill("#f-question", "Hypospadias distal : indication et calendrier opératoire ?")
    page.fill("#f-summary", "Garçon de 7 ans, hypospadias distal, sans symptôme urinaire.")
    page.click(f"button >> text={t('new.submit')}")
    page.wait_for_url(re.compile(r"/referrals/\d+$"))
    return int(page.url.rsplit("/", 1)[1])


def _words(lang: str) -> Any:
    def t(key: str, **params: Any) -> str:
        return translate(key, lang, **params)

    return t


def act(page: Any, lang: str, action: str, **fields: str) -> None:
    t = _words(lang)
    form = page.locator(f"#form-{action}")
    for name, value in fields.items():
        field = form.locator(f'[name="{name}"]')
        if field.evaluate("e => e.tagName") == "SELECT":
            field.select_option(value)
        else:
            field.fill(value)
    with page.expect_navigation():  # post, redirect, get: wait for the page after it
        form.locator("button[type=submit]").click()
    assert text(page, ".flash-ok") == t(f"flash.done.{action}")


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_a_case_goes_to_setif_and_the_loop_closes(
    platform_server: Platform, chromium: Any, lang: str, tmp_path: Path
) -> None:
    t, base = _words(lang), platform_server.base_url
    referrer = sign_in(chromium, base, "ouargla.referrer", lang)
    rid = submit_case(
        referrer,
        lang,
        local_id=f"OUA-E2E-{lang.upper()}",
        service="teleconsultation",
        specialty="paediatric_surgery",
    )
    assert text(referrer, "h1 #status") == t("status.offered")
    assert NAMES[SETIF][lang] in text(referrer, "#provider")
    assert t("flash.submitted", id=rid, provider=NAMES[SETIF][lang]) == text(referrer, ".flash-ok")
    current = referrer.locator("#routing tr.current")
    assert SETIF in current.inner_text()
    assert t("routing.domestic") in current.inner_text()  # the reasons, in the page's language
    assert t("routing.current") in current.inner_text()

    specialist = sign_in(chromium, base, "setif.specialist", lang)
    specialist.click(f"nav.mainnav >> text={t('nav.inbox')}")
    row = specialist.locator(f'table.worklist a[href="/referrals/{rid}"]').first
    row.click()
    specialist.wait_for_url(f"**/referrals/{rid}")
    assert text(specialist, "h1").startswith(t("referral.title", id=rid))
    assert "Yacine" in text(specialist, "#patient")  # identified data under this twinning line
    act(specialist, lang, "accept")
    assert text(specialist, "h1 #status") == t("status.accepted")
    act(specialist, lang, "schedule", kind="teleconsult", at="2026-12-03T09:30")
    assert "2026-12-03 09:30" in text(specialist, "#schedule")
    act(
        specialist,
        lang,
        "complete",
        findings="Hypospadias distal sans courbure.",
        recommendations="Urétroplastie à programmer à Sétif.",
    )
    assert text(specialist, "h1 #status") == t("status.completed")

    referrer.click(f"nav.mainnav >> text={t('nav.outbox')}")
    referrer.wait_for_url("**/outbox")
    outbox_row = referrer.locator(f'table.worklist tr:has(a[href="/referrals/{rid}"])')
    assert t("status.completed") in outbox_row.inner_text()
    outbox_row.locator("a").first.click()
    referrer.wait_for_url(f"**/referrals/{rid}")
    assert "Urétroplastie à programmer à Sétif." in text(referrer, "#report")
    act(referrer, lang, "acknowledge", outcome="improved", note="Opéré, suites simples.")
    assert text(referrer, "h1 #status") == t("status.closed")
    assert t("outcome.improved") in text(referrer, "#outcome")
    timeline = text(referrer, "#timeline")
    for kind in ("created", "accepted", "completed"):
        assert t(f"event.{kind}") in timeline
    assert t("event.closed", outcome=t("outcome.improved")) in timeline
    assert referrer.locator("html").get_attribute("dir") == ("rtl" if lang == "ar" else "ltr")
    shot = tmp_path / f"referral-{lang}.png"
    referrer.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    for page in (referrer, specialist):
        page.context.close()


def test_a_declined_case_goes_to_the_next_provider_then_closes_without_answer(
    platform_server: Platform, chromium: Any
) -> None:
    lang = "fr"
    t, base = _words(lang), platform_server.base_url
    referrer = sign_in(chromium, base, "ouargla.referrer", lang)
    rid = submit_case(
        referrer, lang, local_id="OUA-E2E-DECLINE", service="imaging_review", specialty="radiology"
    )
    first = text(referrer, "#provider .code")
    offered = [row.inner_text() for row in referrer.locator("#routing tbody tr").all()]
    second = next(code for code in SLUGS if code != first and any(code in r for r in offered[1:2]))

    for code, reason in (
        (first, "Pas de radiologue pédiatrique ce mois-ci."),
        (second, "Hors délai."),
    ):
        radiologist = sign_in(chromium, base, f"{SLUGS[code]}.radiologist", lang)
        radiologist.goto(f"/referrals/{rid}")
        act(radiologist, lang, "decline", reason=reason)
        assert text(radiologist, ".page-head .muted") == t("referral.side.observer")
        radiologist.context.close()
        referrer.goto(f"/referrals/{rid}")
        if code == first:
            assert second in text(referrer, "#provider")
            assert t("event.offered.by.declined") in text(referrer, "#timeline")
            assert t("event.declined", reason=reason) in text(referrer, "#timeline")

    assert text(referrer, "h1 #status") == t("status.declined")
    assert text(referrer, "#no-answer") == t("referral.closed_without_answer")
    assert text(referrer, "#provider") == t("referral.nobody")
    referrer.context.close()
