"""The viewer page in headless Chromium against the real platform, in French and in Arabic.

Oran's radiologist stores a small CT study through STOW-RS; its referring
physician sends an imaging review (radiology), which the demo's Oran-AP-HP
agreement covers with pseudonymised data terms, and shares the study with the
provider the referral was routed to. That provider's radiologist opens the
viewer, sees the pseudonym (never the patient's name) in the de-identified
header, scrolls frames, switches window presets, and signs the report.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom.uid import generate_uid

from shared.i18n import translate
from tests.e2e.conftest import DEMO_PASSWORD, Platform
from tests.imaging.test_rendered import COLUMNS, FRAMES, ct

DEMO = json.loads((Path(__file__).parents[2] / "jisr" / "demo.json").read_text(encoding="utf-8"))
SLUGS = {i["code"]: i["slug"] for i in DEMO["institutions"]}
IDS_BY_CODE: dict[str, int] = {}
ORIGINAL_NAME = "Benali^Yacine"


def token(client: httpx.Client, username: str) -> dict[str, str]:
    answer = client.post("/auth/token", data={"username": username, "password": DEMO_PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def stow(client: httpx.Client, headers: dict[str, str], files: list[bytes]) -> None:
    boundary = uuid.uuid4().hex
    body = b""
    for data in files:
        body += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    answer = client.post(
        "/dicomweb/studies",
        content=body,
        headers={
            **headers,
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        },
    )
    assert answer.status_code == 200, answer.text


def provider_code(client: httpx.Client, headers: dict[str, str], referral: dict[str, Any]) -> str:
    provider = referral.get("provider")
    if isinstance(provider, dict) and provider.get("code"):
        return str(provider["code"])
    provider_id = referral.get("provider_id") or (provider or {}).get("id")
    institutions = client.get("/api/institutions", headers=headers, params={"limit": 100}).json()
    items = institutions["items"] if isinstance(institutions, dict) else institutions
    return next(str(i["code"]) for i in items if i["id"] == provider_id)


def make_share(base_url: str, lang: str) -> tuple[int, str]:
    """A ready share of a 2-instance CT study (one of 3 frames) and its provider's code."""
    study = generate_uid()
    series = generate_uid()
    files = [
        ct(study_uid=study, series_uid=series, number=1),
        ct(study_uid=study, series_uid=series, frames=1, number=2),
    ]
    with httpx.Client(base_url=base_url, timeout=30) as client:
        stow(client, token(client, "oran.radiologist"), files)
        referrer = token(client, "oran.referrer")
        answer = client.post(
            "/api/referrals",
            json={
                "patient": {
                    "local_id": f"ORAN-VIEW-{lang.upper()}",
                    "name": "Yacine Benali",
                    "sex": "M",
                    "birth_date": "1975-06-01",
                },
                "question": "Nodule pulmonaire : avis radiologique ?",
                "summary": "Toux depuis trois mois.",
                "specialty": "radiology",
                "urgency": "routine",
                "service": "imaging_review",
                "languages": [lang],
                "study_uids": [study],
            },
            headers={**referrer, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert answer.status_code == 201, answer.text
        referral = answer.json()
        code = provider_code(client, referrer, referral)
        shared = client.post(
            "/api/imaging/shares",
            json={"study_uid": study, "referral_id": referral["id"]},
            headers=referrer,
        )
        assert shared.status_code == 201, shared.text
        return int(shared.json()["id"]), code


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_a_radiologist_reads_a_share_and_signs_the_report(
    platform_server: Platform, chromium: Any, lang: str
) -> None:
    def t(key: str, **params: Any) -> str:
        return translate(key, lang, **params)

    base = platform_server.base_url
    share_id, code = make_share(base, lang)
    context = browser_context(chromium, base)
    page = context.new_page()
    response = page.goto(f"/viewer/shares/{share_id}")
    assert response is not None
    page.wait_for_url(re.compile(r"/login\?next="))
    page.fill("#f-username", f"{SLUGS[code]}.radiologist")
    page.fill("#f-password", DEMO_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(rf"/viewer/shares/{share_id}$"))
    page.goto(f"/viewer/shares/{share_id}?lang={lang}")

    assert page.locator("html").get_attribute("lang") == lang
    assert page.locator("html").get_attribute("dir") == ("rtl" if lang == "ar" else "ltr")
    assert page.locator("h1").inner_text() == t("viewer.title", share=share_id)
    header = page.locator("#header-table").inner_text()
    assert "Benali" not in header and "Yacine" not in header
    name = page.locator('tr[data-tag="PatientName"] td').inner_text().strip()
    assert name not in ("", "-")
    assert page.locator('tr[data-tag="PatientIdentityRemoved"] td').inner_text().strip() == "YES"
    assert page.locator('tr[data-tag="Columns"] td').inner_text().strip() == str(COLUMNS)
    assert "Benali" not in page.content()

    image = page.locator("#frame")
    loaded = "e => e.complete && e.naturalWidth > 0"
    page.wait_for_function(f"() => ({loaded})(document.getElementById('frame'))")
    assert image.evaluate("e => e.naturalWidth") == COLUMNS
    first = image.get_attribute("src")
    assert first is not None and first.endswith("/frames/1/rendered")
    assert page.locator("#frame-count").inner_text() == str(FRAMES + 1)

    page.click("#next")
    assert page.locator("#frame-no").inner_text() == "2"
    assert str(image.get_attribute("src")).endswith("/frames/2/rendered")
    image.hover()
    page.mouse.wheel(0, 120)
    assert page.locator("#frame-no").inner_text() == "3"

    page.click('#presets button[data-preset="lung"]')
    lung = str(image.get_attribute("src"))
    assert lung.endswith("/frames/3/rendered?window=-600%2C1500")
    page.wait_for_function(f"() => ({loaded})(document.getElementById('frame'))")
    assert (
        page.locator('#presets button[data-preset="lung"]').get_attribute("aria-pressed") == "true"
    )
    fetched = context.request.get(base + lung)
    assert fetched.status == 200 and fetched.headers["content-type"] == "image/png"

    page.fill("#f-findings", "Nodule de 6 mm du lobe supérieur droit.")
    page.fill("#f-impression", "Contrôle scanographique à 12 mois.")
    page.click("#report-form button[type=submit]")
    page.wait_for_url(re.compile(rf"/viewer/shares/{share_id}\?saved=1$"))
    assert page.locator("#saved").inner_text() == t("viewer.report.saved")
    assert page.locator("#report-impression").inner_text() == "Contrôle scanographique à 12 mois."
    assert page.locator("#report-form").count() == 0
    context.close()


def test_a_third_institution_gets_the_404_page_and_strangers_sign_in_first(
    platform_server: Platform, chromium: Any
) -> None:
    base = platform_server.base_url
    share_id, _ = make_share(base, "en")
    with httpx.Client(base_url=base, timeout=30) as client:
        anonymous = client.get(f"/viewer/shares/{share_id}", follow_redirects=False)
        assert anonymous.status_code == 303
        assert anonymous.headers["location"] == f"/login?next=%2Fviewer%2Fshares%2F{share_id}"
    context = browser_context(chromium, base)
    page = context.new_page()
    page.goto(f"/login?next=/viewer/shares/{share_id}")
    page.fill("#f-username", "clb.radiologist")
    page.fill("#f-password", DEMO_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(rf"/viewer/shares/{share_id}$"))
    answer = page.goto(f"/viewer/shares/{share_id}?lang=en")
    assert answer is not None and answer.status == 404
    assert page.locator("h1").inner_text() == translate("viewer.error.not_found", "en")
    frame = context.request.get(
        f"{base}/viewer/shares/{share_id}/series/x/instances/y/frames/1/rendered"
    )
    assert frame.status == 404
    context.close()


def browser_context(chromium: Any, base: str) -> Any:
    return chromium.new_context(base_url=base, locale="en-US")
