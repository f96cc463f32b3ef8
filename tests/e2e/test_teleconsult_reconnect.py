"""When the teleconsult page reconnects its signalling socket, and when it must not.

Oran's referring physician is admitted by AP-HP's specialist, then opens the
same session in a second tab of the same browser. The server keeps the newer
socket and closes the first tab's with 4000: the first tab says the call goes
on elsewhere and never reconnects (were it to, the two tabs would take the room
from each other forever), while the second tab stays in the call with the host.
A socket the room refuses (1008, here a forged join token) is not reopened
blindly either: the page shows the refusal and a "join again" button that asks
the page's route for a fresh join token.
"""

from __future__ import annotations

from typing import Any

from shared.i18n import translate
from tests.e2e.conftest import Platform
from tests.e2e.test_teleconsult import (
    SLUGS,
    WAIT_MS,
    scheduled_session,
    sign_in,
)

PLAYING = (
    "() => { const v = document.querySelector('figure.remote video');"
    " return Boolean(v && v.videoWidth > 0 && v.readyState >= 2); }"
)
IN_ROOM = "() => !document.getElementById('room').hidden"
COUNT_MESSAGES = (
    "() => { window.__seen = {}; window.jisrTeleconsult.signalling.addEventListener('message',"
    " (e) => { const k = e.detail.type; window.__seen[k] = (window.__seen[k] || 0) + 1; }); }"
)
SIGNALLING = (
    "() => { const s = window.jisrTeleconsult.signalling;"
    " return { sockets: s.sockets, closed: s.closed, pending: s.timer !== null,"
    " open: Boolean(s.socket && s.socket.readyState === WebSocket.OPEN) }; }"
)
FORGE_NEXT_JOIN = (
    "() => { const s = window.jisrTeleconsult.signalling; const real = s.join;"
    " s.join = async () => { s.join = real; const grant = await real();"
    " const url = new URL(grant.ws_url, location.href); url.searchParams.set('token', 'forged');"
    " return { ...grant, ws_url: url.pathname + url.search, token: 'forged' }; }; }"
)


def assert_sockets(page: Any, *, opened: int, live: bool) -> None:
    """The page opened `opened` sockets; one is open (live) or none is and none will be."""
    assert page.evaluate(SIGNALLING) == {
        "sockets": opened,
        "closed": not live,
        "pending": False,
        "open": live,
    }


def frames_from_remote(page: Any) -> int:
    return int(
        page.evaluate(
            "() => { const v = document.querySelector('figure.remote video');"
            " return v && v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality().totalVideoFrames : 0; }"
        )
    )


def in_call(host: Any, guest: Any) -> None:
    """Both sides play the other's video, and a chat line crosses the data channel."""
    host.wait_for_function(PLAYING, timeout=WAIT_MS)
    guest.wait_for_function(PLAYING, timeout=WAIT_MS)
    host.wait_for_function(
        "() => [...window.jisrTeleconsult.call.peers.values()]"
        ".some(p => p.channel && p.channel.readyState === 'open')",
        timeout=WAIT_MS,
    )
    line = f"ping {frames_from_remote(host)}"
    host.fill("#chat-text", line)
    host.click("#chat-form button[type=submit]")
    guest.wait_for_function(
        "(line) => [...document.querySelectorAll('#chat-log li bdi')].some(b => b.textContent === line)",
        arg=line,
        timeout=WAIT_MS,
    )


def admitted_guest(media_chromium: Any, base: str) -> tuple[Any, Any, Any, Any, str]:
    """Host and guest in the call; the contexts, the pages and the page path."""
    session_id, _, _ = scheduled_session(base)
    path = f"/teleconsults/{session_id}"
    host_context = media_chromium.new_context(base_url=base, locale="fr-FR")
    guest_context = media_chromium.new_context(base_url=base, locale="en-US")
    host = host_context.new_page()
    guest = guest_context.new_page()
    sign_in(host, path, f"{SLUGS['FR-PARIS-APHP']}.specialist")
    sign_in(guest, path, f"{SLUGS['DZ-ORAN-EHU']}.referrer")
    host.click("#join")
    host.wait_for_function(IN_ROOM, timeout=WAIT_MS)
    guest.click("#join")
    host.wait_for_selector("#waitlist-items li button.admit", timeout=WAIT_MS)
    host.click("#waitlist-items li button.admit")
    guest.wait_for_function(IN_ROOM, timeout=WAIT_MS)
    in_call(host, guest)
    return host_context, guest_context, host, guest, path


def test_a_second_tab_takes_the_call_and_the_first_does_not_reconnect(
    platform_server: Platform, media_chromium: Any
) -> None:
    host_context, guest_context, host, first, path = admitted_guest(
        media_chromium, platform_server.base_url
    )
    try:
        host.evaluate(COUNT_MESSAGES)
        second = guest_context.new_page()
        second.goto(path)
        second.click("#join")
        second.wait_for_function(IN_ROOM, timeout=WAIT_MS)
        # The host answers the second tab's offer on a new connection (the old one dropped).
        host.wait_for_function("() => (window.__seen.offer || 0) >= 1", timeout=WAIT_MS)

        # The first tab is told, in its language, that the call goes on elsewhere.
        first.wait_for_function("() => !document.getElementById('over').hidden", timeout=WAIT_MS)
        lang = str(first.locator("html").get_attribute("lang"))
        assert first.locator("#over-text").inner_text() == translate("tc.replaced", lang)

        # The second tab is in the call with the host (it called the host afresh).
        in_call(host, second)
        host.wait_for_function(
            "(n) => { const v = document.querySelector('figure.remote video');"
            " return v.getVideoPlaybackQuality().totalVideoFrames > n; }",
            arg=frames_from_remote(host) + 15,
            timeout=WAIT_MS,
        )

        # The first tab opened one socket, has none open and no reconnection pending.
        assert_sockets(first, opened=1, live=False)
        assert_sockets(second, opened=1, live=True)
        # The host saw the guest come back once (the second tab), never leave or return again.
        seen = host.evaluate("() => window.__seen")
        assert seen.get("peer-reconnected") == 1, seen
        assert "peer-left" not in seen and "peer-joined" not in seen, seen
        assert host.evaluate("() => window.jisrTeleconsult.call.peers.size") == 1
        assert second.locator("#over").is_hidden()
    finally:
        host_context.close()
        guest_context.close()


def test_a_refused_socket_is_not_reopened_until_the_user_joins_again(
    platform_server: Platform, media_chromium: Any
) -> None:
    host_context, guest_context, host, guest, _ = admitted_guest(
        media_chromium, platform_server.base_url
    )
    try:
        # A network drop; the socket that reopens carries a forged join token: 1008.
        guest.evaluate(FORGE_NEXT_JOIN)
        guest.evaluate("() => window.jisrTeleconsult.signalling.drop()")
        guest.wait_for_function(
            "() => !document.getElementById('interrupted').hidden", timeout=WAIT_MS
        )
        lang = str(guest.locator("html").get_attribute("lang"))
        prefix = translate("tc.refused_socket", lang, detail="").strip()
        assert guest.locator("#interrupted-text").inner_text().startswith(prefix)
        assert guest.locator("#rejoin").is_visible()
        assert_sockets(guest, opened=2, live=False)
        host.wait_for_function(
            "() => window.jisrTeleconsult.call.peers.size === 0", timeout=WAIT_MS
        )

        # "Join again" fetches a fresh join token: back in the call.
        guest.click("#rejoin")
        guest.wait_for_function(IN_ROOM, timeout=WAIT_MS)
        in_call(host, guest)
        assert_sockets(guest, opened=3, live=True)
    finally:
        host_context.close()
        guest_context.close()
