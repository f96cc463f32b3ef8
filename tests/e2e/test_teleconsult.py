"""The teleconsult page in headless Chromium against the real platform, with an aiortc peer.

AP-HP's specialist accepted a nephrology teleconsultation from Oran (the demo's
AG-2024-ORAN-APHP covers it) and schedules the session, inviting Oran's
referring physician. The specialist (the host) opens `/teleconsults/{id}` in
Chromium with fake camera and microphone and joins; Oran's physician is an
aiortc peer that joins through `POST /api/teleconsults/{id}/join` and the real
signalling socket and waits; the host admits it from the page's waiting list.
Each side then receives the other's video frames: the page's remote <video>
decodes frames (its size and `framesDecoded`), the aiortc peer gets frames,
and a chat line typed in the page arrives over the data channel. The page
shows the other side's name and institution. In Arabic the page is right to
left. A user of a third institution gets the 404 page, and the page's join
route refuses a call without the page's CSRF token.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import av
import httpx

from shared.i18n import translate
from tests.e2e.conftest import DEMO_PASSWORD, Platform
from tests.teleconsult.peers import AiortcPeer, SignallingClient, loopback_candidates

T = TypeVar("T")
DEMO = json.loads((Path(__file__).parents[2] / "jisr" / "demo.json").read_text(encoding="utf-8"))
SLUGS = {i["code"]: i["slug"] for i in DEMO["institutions"]}
WAIT_MS = 30_000
WAIT_S = 30.0


class Loop:
    """An asyncio loop in a thread of its own, for the aiortc peer beside the sync browser."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="aiortc", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = WAIT_S) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def headers(client: httpx.Client, username: str) -> dict[str, str]:
    answer = client.post("/auth/token", data={"username": username, "password": DEMO_PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def scheduled_session(
    base: str, *, low_bandwidth: bool = False
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """A session hosted by AP-HP's specialist with Oran's referrer; the referrer's headers and facts."""
    oran, aphp = SLUGS["DZ-ORAN-EHU"], SLUGS["FR-PARIS-APHP"]
    with httpx.Client(base_url=base, timeout=30) as client:
        referrer = headers(client, f"{oran}.referrer")
        specialist = headers(client, f"{aphp}.specialist")
        answer = client.post(
            "/api/referrals",
            json={
                "patient": {
                    "local_id": f"ORAN-TC-{uuid.uuid4().hex[:6]}",
                    "name": "Amina Khelifi",
                    "sex": "F",
                    "birth_date": "1981-02-14",
                },
                "question": "Greffe rénale : bilan pré-greffe à discuter en téléconsultation ?",
                "summary": "Insuffisance rénale terminale, dialysée depuis 2 ans.",
                "specialty": "nephrology",
                "urgency": "routine",
                "service": "teleconsultation",
                "languages": ["fr"],
            },
            headers={**referrer, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert answer.status_code == 201, answer.text
        referral = answer.json()
        accepted = client.post(f"/api/referrals/{referral['id']}/accept", headers=specialist)
        assert accepted.status_code == 200, accepted.text
        me = client.get("/api/users/me", headers=referrer).json()
        institution = client.get(
            f"/api/institutions/{me['institution_id']}", headers=referrer
        ).json()
        me["institution_names"] = set(institution["names"].values())
        created = client.post(
            "/api/teleconsults",
            json={
                "referral_id": referral["id"],
                "starts_at": (datetime.now(UTC) + timedelta(minutes=2)).isoformat(),
                "duration_minutes": 30,
                "participants": [me["id"]],
                "low_bandwidth": low_bandwidth,
            },
            headers=specialist,
        )
        assert created.status_code == 201, created.text
        return int(created.json()["id"]), referrer, me


FRAMES_DECODED = (
    "async () => { let n = 0; for (const p of window.jisrTeleconsult.call.peers.values()) {"
    " (await p.pc.getStats()).forEach(r => { if (r.type === 'inbound-rtp' &&"
    " r.kind === 'video') n += r.framesDecoded || 0; }); } return n; }"
)
TO_RECORDER_ENCODED = (
    "async () => { const p = window.jisrTeleconsult.call.peers.get('recorder');"
    " if (!p) return -1; let n = 0; (await p.pc.getStats()).forEach(r => {"
    " if (r.type === 'outbound-rtp' && r.kind === 'video') n += r.framesEncoded || 0; });"
    " return n; }"
)


def watch(page: Any, name: str, reader: str) -> None:
    """Keep `window.__probes[name]` up to date with the async `reader` (getStats has no event).

    `wait_for_function` does not await a predicate's promise, so the page polls the
    stats itself and the test waits on the plain number it writes.
    """
    page.evaluate(
        "(name) => { window.__probes = window.__probes || {}; const read = " + reader + ";"
        " const tick = async () => { try { window.__probes[name] = await read(); } catch (e) {} };"
        " tick(); window.setInterval(tick, 200); }",
        name,
    )


def wait_above(page: Any, name: str, floor: float) -> float:
    """Wait until the watched value exceeds `floor`; the value."""
    page.wait_for_function(
        "([name, floor]) => ((window.__probes || {})[name] ?? -1) > floor",
        arg=[name, floor],
        timeout=WAIT_MS,
    )
    return float(page.evaluate("(name) => window.__probes[name]", name))


def sign_in(page: Any, path: str, username: str) -> None:
    page.goto(path)
    page.wait_for_url(re.compile(r"/login\?next="))
    page.fill("#f-username", username)
    page.fill("#f-password", DEMO_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(path) + "$"))


async def aiortc_joins(base: str, session_id: int, referrer: dict[str, str]) -> Any:
    """Oran's physician joins through the API and the signalling socket, as an aiortc peer."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        joined = await client.post(f"/api/teleconsults/{session_id}/join", headers=referrer)
    assert joined.status_code == 200, joined.text
    ticket = joined.json()
    assert ticket["waiting"] is True
    opened = SignallingClient.open(base, session_id, ticket["token"])
    client_ = await opened.__aenter__()
    peer = AiortcPeer(client_, shade=90)
    welcome = await peer.start()
    assert welcome["waiting"] is True
    return opened, peer


@dataclass
class AiortcSide:
    loop: Loop
    peer: Any
    host_id: str = ""


@contextmanager
def aiortc_physician(base: str, session_id: int, referrer: dict[str, str]) -> Iterator[AiortcSide]:
    """Oran's physician as an aiortc peer in its own event loop, waiting in the room."""
    loop = Loop()
    opened: Any = None
    peer: Any = None
    with loopback_candidates():
        try:
            opened, peer = loop.run(aiortc_joins(base, session_id, referrer))
            yield AiortcSide(loop, peer)
        finally:
            if peer is not None:
                loop.run(peer.close())
            if opened is not None:
                loop.run(opened.__aexit__(None, None, None))
            loop.close()


def admit(page: Any, side: AiortcSide) -> None:
    """The host admits the waiting physician from the page; the physician's first frame arrives."""
    page.wait_for_selector("#waitlist-items li button.admit", timeout=WAIT_MS)
    page.click("#waitlist-items li button.admit")
    # Admitted, the aiortc peer offers; the page answers (trickling its candidates).
    side.host_id = next(iter(side.loop.run(wait_for_pc(side.peer))))
    frame = side.loop.run(side.peer.first_frame(side.host_id, WAIT_S))
    assert frame.width > 0 and frame.height > 0


def host_joins(media_chromium: Any, base: str, session_id: int, lang: str) -> tuple[Any, Any]:
    """AP-HP's specialist signs in, opens the page in `lang` and joins; its context and page."""
    context = media_chromium.new_context(base_url=base, locale="en-US")
    page = context.new_page()
    path = f"/teleconsults/{session_id}"
    sign_in(page, path, f"{SLUGS['FR-PARIS-APHP']}.specialist")
    page.goto(f"{path}?lang={lang}")
    page.click("#join")
    page.wait_for_function("() => !document.getElementById('room').hidden", timeout=WAIT_MS)
    return context, page


def test_the_host_admits_an_aiortc_peer_and_each_receives_the_others_frames(
    platform_server: Platform, media_chromium: Any
) -> None:
    base = platform_server.base_url
    session_id, referrer, oran = scheduled_session(base)
    context, page = host_joins(media_chromium, base, session_id, "fr")
    assert page.locator("html").get_attribute("dir") == "ltr"
    assert page.locator("h1").inner_text() == translate("tc.title", "fr", session=session_id)
    assert page.locator("#end").is_visible()  # the host may end the session
    page.wait_for_function("() => document.getElementById('local').videoWidth > 0", timeout=WAIT_MS)

    try:
        with aiortc_physician(base, session_id, referrer) as side:
            admit(page, side)
            received(page, side, oran)
    finally:
        context.close()


def received(page: Any, side: AiortcSide, oran: dict[str, Any]) -> None:
    """Each side has the other's video; names, chat both ways, mute and camera toggles."""
    loop, peer, host_id = side.loop, side.peer, side.host_id
    page.wait_for_function(
        "() => { const v = document.querySelector('figure.remote video');"
        " return v && v.videoWidth > 0 && v.readyState >= 2; }",
        timeout=WAIT_MS,
    )
    assert page.locator("figure.remote video").evaluate("v => v.videoWidth") == 320
    watch(page, "decoded", FRAMES_DECODED)
    assert wait_above(page, "decoded", 5) > 5
    # The other side's name and institution, as the join grant carries them.
    shown = page.locator("figure.remote .peer-name").inner_text().strip()
    assert shown == oran["display_name"]
    where = page.locator("figure.remote .peer-institution").inner_text().strip()
    assert where in oran["institution_names"], (where, oran["institution_names"])

    # Chat over the data channel, both ways.
    channel = loop.run(peer.channel_open(host_id, WAIT_S))
    page.fill("#chat-text", "Bonjour, vous m'entendez ?")
    page.click("#chat-form button[type=submit]")
    got = loop.run(asyncio.wait_for(peer.channel_messages.get(), WAIT_S))
    assert got == (host_id, "Bonjour, vous m'entendez ?")
    loop.loop.call_soon_threadsafe(channel.send, "Oui, très bien.")
    page.wait_for_function(
        "() => document.getElementById('chat-log').innerText.includes('Oui, très bien.')",
        timeout=WAIT_MS,
    )

    # Mute and camera toggles act on the local tracks.
    page.click("#mute")
    assert page.evaluate(
        "() => window.jisrTeleconsult.stream.getAudioTracks().every(t => !t.enabled)"
    )
    page.click("#camera")
    assert page.evaluate(
        "() => window.jisrTeleconsult.stream.getVideoTracks().every(t => !t.enabled)"
    )


async def wait_for_pc(peer: Any) -> dict[str, Any]:
    """The aiortc peer's connections once it has one (it offers as soon as it is admitted)."""
    await peer.expect("admitted", WAIT_S)
    return dict(peer.pcs)


def test_the_page_speaks_arabic_right_to_left_and_refuses_others(
    platform_server: Platform, media_chromium: Any
) -> None:
    base = platform_server.base_url
    session_id, _, _ = scheduled_session(base)
    path = f"/teleconsults/{session_id}"
    context = media_chromium.new_context(base_url=base, locale="ar")
    page = context.new_page()
    sign_in(page, path, f"{SLUGS['DZ-ORAN-EHU']}.referrer")
    page.goto(f"{path}?lang=ar")
    assert page.locator("html").get_attribute("lang") == "ar"
    assert page.locator("html").get_attribute("dir") == "rtl"
    assert page.locator("h1").inner_text() == translate("tc.title", "ar", session=session_id)
    assert page.locator("#join").inner_text() == translate("tc.join", "ar")
    direction = page.locator("#lobby").evaluate("e => getComputedStyle(e).direction")
    assert direction == "rtl"

    # The page's join route needs the page's CSRF token.
    refused = context.request.post(f"{base}{path}/join")
    assert refused.status == 403
    context.close()

    stranger = media_chromium.new_context(base_url=base, locale="en-US")
    page = stranger.new_page()
    sign_in(page, path, f"{SLUGS['MA-TINGHIR-CHP']}.referrer")
    answer = page.goto(f"{path}?lang=en")
    assert answer is not None and answer.status == 404
    assert page.locator("h1").inner_text() == translate("tc.not_found", "en")
    csrf = next(c["value"] for c in stranger.cookies() if c["name"] == "jisr_csrf")
    joined = stranger.request.post(f"{base}{path}/join", headers={"X-CSRF-Token": csrf})
    assert joined.status == 404
    for route, body in (
        ("stats", {"measured_at": "2026-11-22T10:00:00Z"}),
        ("consent", {"recording": True}),
    ):
        refused = stranger.request.post(
            f"{base}{path}/{route}", headers={"X-CSRF-Token": csrf}, data=json.dumps(body)
        )
        assert refused.status == 404, (route, refused.status)
    with httpx.Client(base_url=base, timeout=30) as client:
        anonymous = client.get(path, follow_redirects=False)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/login?next=")
    stranger.close()


def local_ufrag(page: Any) -> str:
    return str(
        page.evaluate(
            "() => { const [p] = window.jisrTeleconsult.call.peers.values();"
            " return /a=ice-ufrag:(\\S+)/.exec(p.pc.localDescription.sdp)[1]; }"
        )
    )


def test_two_browsers_in_low_bandwidth_restart_ice_after_a_drop_and_the_host_ends(
    platform_server: Platform, media_chromium: Any
) -> None:
    """Browser to browser: waiting room, low-bandwidth video, an ICE restart, stats, the end."""
    base = platform_server.base_url
    session_id, _, _ = scheduled_session(base, low_bandwidth=True)
    path = f"/teleconsults/{session_id}"
    host_context = media_chromium.new_context(base_url=base, locale="fr-FR")
    guest_context = media_chromium.new_context(base_url=base, locale="en-US")
    try:
        host = host_context.new_page()
        guest = guest_context.new_page()
        sign_in(host, path, f"{SLUGS['FR-PARIS-APHP']}.specialist")
        sign_in(guest, path, f"{SLUGS['DZ-ORAN-EHU']}.referrer")
        assert guest.locator("#low-bandwidth").is_visible()

        host.click("#join")
        host.wait_for_function("() => !document.getElementById('room').hidden", timeout=WAIT_MS)
        guest.click("#join")
        guest.wait_for_function("() => !document.getElementById('waiting').hidden", timeout=WAIT_MS)
        assert guest.locator("#room").is_hidden()
        host.wait_for_selector("#waitlist-items li button.admit", timeout=WAIT_MS)
        host.click("#waitlist-items li button.admit")
        guest.wait_for_function("() => !document.getElementById('room').hidden", timeout=WAIT_MS)

        playing = (
            "() => { const v = document.querySelector('figure.remote video');"
            " return v && v.videoWidth > 0 && v.readyState >= 2; }"
        )
        host.wait_for_function(playing, timeout=WAIT_MS)
        guest.wait_for_function(playing, timeout=WAIT_MS)
        # Low-bandwidth mode: the camera is asked for 320x240.
        assert guest.locator("#local").evaluate("v => v.videoWidth") == 320
        assert host.locator("figure.remote video").evaluate("v => v.videoWidth") == 320
        # ... and each video sender is capped (RTCRtpSender.setParameters).
        guest.wait_for_function(
            "() => [...window.jisrTeleconsult.call.peers.values()].every(p => p.pc.getSenders()"
            ".filter(s => s.track && s.track.kind === 'video')"
            ".every(s => (s.getParameters().encodings || [])[0]?.maxBitrate === 150000))",
            timeout=WAIT_MS,
        )

        # A quality sample reaches the server (the page's stats route answers 204).
        with guest.expect_response(
            lambda r: r.url.endswith(f"{path}/stats") and r.request.method == "POST",
            timeout=WAIT_MS,
        ) as posted:
            pass
        assert posted.value.status == 204

        # A network drop as the server sees it late: the guest's socket comes back while the
        # old one is still open, so both keep their connection and the guest restarts ICE.
        before_ufrag = local_ufrag(guest)
        watch(host, "decoded", FRAMES_DECODED)
        before_frames = wait_above(host, "decoded", 0)
        guest.evaluate("() => window.jisrTeleconsult.signalling.open()")
        guest.wait_for_function("() => window.jisrTeleconsult.restarts >= 1", timeout=WAIT_MS)
        guest.wait_for_function(
            "(old) => { const [p] = window.jisrTeleconsult.call.peers.values();"
            " return p.pc.signalingState === 'stable' &&"
            " !p.pc.localDescription.sdp.includes('a=ice-ufrag:' + old); }",
            arg=before_ufrag,
            timeout=WAIT_MS,
        )
        assert local_ufrag(guest) != before_ufrag
        wait_above(host, "decoded", before_frames + 15)
        assert host.evaluate("() => window.jisrTeleconsult.call.peers.size") == 1

        # A drop the server sees: the guest's socket closes, the host sees it leave and drops
        # its connection; the guest joins again (a fresh join token from the page's route),
        # is let in directly (admission lasts the session) and calls the host afresh.
        guest.evaluate("() => window.jisrTeleconsult.signalling.drop()")
        host.wait_for_function(
            "() => window.jisrTeleconsult.call.peers.size === 0", timeout=WAIT_MS
        )
        host.wait_for_function(playing, timeout=WAIT_MS)
        guest.wait_for_function(playing, timeout=WAIT_MS)
        assert guest.evaluate("() => window.jisrTeleconsult.signalling.opened") >= 3

        # The host ends the session for everyone.
        host.on("dialog", lambda dialog: dialog.accept())
        host.click("#end")
        guest.wait_for_function("() => !document.getElementById('over').hidden", timeout=WAIT_MS)
        lang = str(guest.locator("html").get_attribute("lang"))
        assert guest.locator("#over-text").inner_text() == translate("tc.ended", lang)
    finally:
        host_context.close()
        guest_context.close()


def recordings(platform_server: Platform, session_id: int, specialist: dict[str, str]) -> Any:
    """The session's recordings once the recorder stored both, waiting up to `WAIT_S`; on a
    timeout the recorder's log (the worker's spawn writes it beside its pid file) says why."""
    log = platform_server.data_dir / "teleconsult" / "recorders" / f"{session_id}.log"
    deadline = time.monotonic() + WAIT_S
    with httpx.Client(base_url=platform_server.base_url, timeout=30) as client:
        while True:
            listed = client.get(f"/api/teleconsults/{session_id}/recordings", headers=specialist)
            assert listed.status_code == 200, listed.text
            if len(listed.json()) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # the stored recordings have no event to wait on over HTTP
    found = listed.json()
    assert len(found) == 2, log.read_text() if log.exists() else "no recorder was started"
    return found


def recorder_has_video(platform_server: Platform, session_id: int, *, peers: int = 2) -> None:
    """Wait until the recorder says it received 30 video frames from each of `peers` people:
    a page's own send counters say nothing of what a loaded recorder got."""
    log = platform_server.data_dir / "teleconsult" / "recorders" / f"{session_id}.log"
    deadline = time.monotonic() + WAIT_S
    while True:
        text = log.read_text() if log.exists() else ""
        senders = set(re.findall(r"recorder received 30 video frames from ([\w:.-]+)", text))
        if len(senders) >= peers:
            return
        assert time.monotonic() < deadline, text[-3000:] or "no recorder log"
        time.sleep(0.2)  # the recorder's log is a file: no event to wait on


def recorded(page: Any) -> None:
    """Everyone sees the recorder in the room; the page sends it three seconds of video
    (trickling its candidates to the recorder, which put its own in its SDP)."""
    page.wait_for_function("() => !document.getElementById('recording').hidden", timeout=WAIT_MS)
    page.wait_for_function(
        "() => { const p = window.jisrTeleconsult.call.peers.get('recorder');"
        " return p && p.pc.connectionState === 'connected'; }",
        timeout=WAIT_MS,
    )
    watch(page, "to-recorder", TO_RECORDER_ENCODED)
    start = wait_above(page, "to-recorder", -1)
    wait_above(page, "to-recorder", start + 90)


def test_with_everyones_consent_the_recorder_records_the_browser_and_the_aiortc_peer(
    platform_server: Platform, media_chromium: Any, tmp_path: Path
) -> None:
    """Consent through the API, then on the page: that last yes starts the recorder process by
    itself (the platform's worker spawns it); it joins the room and both files are kept."""
    base = platform_server.base_url
    session_id, referrer, _ = scheduled_session(base)
    aphp = SLUGS["FR-PARIS-APHP"]
    context, page = host_joins(media_chromium, base, session_id, "en")
    try:
        with aiortc_physician(base, session_id, referrer) as side:
            with httpx.Client(base_url=base, timeout=30) as client:
                said = client.post(
                    f"/api/teleconsults/{session_id}/consent",
                    json={"recording": True},
                    headers=referrer,
                )
            assert said.status_code == 200, said.text
            assert said.json()["recording_allowed"] is False  # the host has not answered
            admit(page, side)
            assert page.locator("#recording").is_hidden()
            page.click("#consent-yes")
            # Everyone who joined said yes: the page says so, and the worker starts the recorder.
            page.wait_for_function(
                "all => document.getElementById('consent-state').textContent === all",
                arg=translate("tc.consent_all", "en"),
                timeout=WAIT_MS,
            )
            assert page.locator("#consent-yes").get_attribute("aria-pressed") == "true"
            recorded(page)
            recorder_has_video(platform_server, session_id)
            page.on("dialog", lambda dialog: dialog.accept())
            page.click("#end")
            # The room's `ended` reaches the host too: only then may the page go, or its
            # socket can close before the server has read the end, leaving the recorder
            # alone in an open room.
            page.wait_for_function("() => !document.getElementById('over').hidden", timeout=WAIT_MS)
    finally:
        context.close()

    with httpx.Client(base_url=base, timeout=30) as client:
        specialist = headers(client, f"{aphp}.specialist")
        kept = recordings(platform_server, session_id, specialist)
        stranger = headers(client, f"{SLUGS['MA-TINGHIR-CHP']}.referrer")
        for item in kept:  # the page's host and the aiortc physician
            url = f"/api/teleconsults/{session_id}/recordings/{item['id']}"
            assert client.get(url, headers=stranger).status_code == 404
            got = client.get(url, headers=specialist)
            assert got.status_code == 200
            file = tmp_path / f"{item['id']}.mkv"
            file.write_bytes(got.content)
            with av.open(str(file)) as container:
                assert sum(1 for _ in container.decode(video=0)) > 10
