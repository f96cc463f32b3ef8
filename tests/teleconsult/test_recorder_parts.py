"""The recorder's pure parts: trickled candidates, ICE server lists, the page's files."""

from __future__ import annotations

import pytest

from services.teleconsult.pages.render import static_file
from services.teleconsult.recording.room import (
    candidate_from_init,
    configuration,
    ice_servers_from,
)

CHROME_CANDIDATE = (
    "candidate:842163049 1 udp 1677729535 127.0.0.1 51234 typ host generation 0 "
    "ufrag 4ZcD network-cost 999"
)


def test_a_browsers_trickled_candidate_becomes_an_aiortc_candidate() -> None:
    candidate = candidate_from_init(
        {"candidate": CHROME_CANDIDATE, "sdpMid": "0", "sdpMLineIndex": 0}
    )
    assert candidate is not None
    assert (candidate.ip, candidate.port, candidate.type) == ("127.0.0.1", 51234, "host")
    assert (candidate.sdpMid, candidate.sdpMLineIndex) == ("0", 0)


@pytest.mark.parametrize("init", [None, {"candidate": ""}, {"candidate": "  "}, 42, {}])
def test_an_empty_candidate_ends_the_trickle(init: object) -> None:
    assert candidate_from_init(init) is None


def test_a_bare_candidate_string_is_taken_too() -> None:
    candidate = candidate_from_init("a=" + CHROME_CANDIDATE)
    assert candidate is not None and candidate.sdpMLineIndex == 0


def test_ice_servers_keep_credentials_and_drop_entries_without_urls() -> None:
    servers = ice_servers_from(
        [
            {"urls": ["stun:stun.example.org:3478"]},
            {"urls": "turn:turn.example.org:3478", "username": "1:u", "credential": "c"},
            {"username": "no-urls"},
            "junk",
        ]
    )
    assert [s.urls for s in servers] == [
        ["stun:stun.example.org:3478"],
        "turn:turn.example.org:3478",
    ]
    assert (servers[1].username, servers[1].credential) == ("1:u", "c")


def test_no_servers_given_means_none_never_a_public_default() -> None:
    assert configuration([]).iceServers == []
    assert configuration([], relay_only=True).iceTransportPolicy.value == "relay"


@pytest.mark.parametrize(
    "name", ["../recorder.py", ".hidden.js", "teleconsult.html", "nope.js", "a/b.js"]
)
def test_the_page_serves_its_own_scripts_only(name: str) -> None:
    assert static_file(name) is None


def test_the_page_script_is_served_as_javascript() -> None:
    found = static_file("teleconsult.js")
    assert found is not None and found[1].startswith("text/javascript")
