"""The signalling wire protocol, the flood bucket and the origin rule, called directly."""

from __future__ import annotations

import json

import pytest

from services.teleconsult.signalling import origins, protocol
from services.teleconsult.signalling.protocol import (
    Admit,
    Answer,
    Candidate,
    Chat,
    End,
    Leave,
    Offer,
    ProtocolError,
    TokenBucket,
    parse,
)

LIMIT = 64 * 1024
SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


def p(message: object) -> protocol.ClientMessage:
    return parse(json.dumps(message), max_bytes=LIMIT)


def code_of(raw: str | bytes, max_bytes: int = LIMIT) -> str:
    with pytest.raises(ProtocolError) as caught:
        parse(raw, max_bytes=max_bytes)
    return caught.value.code


def test_every_client_message_parses_into_its_type() -> None:
    assert p({"type": "offer", "to": "user:2", "sdp": SDP}) == Offer(to="user:2", sdp=SDP)
    assert p({"type": "answer", "to": "user:2", "sdp": {"type": "answer", "sdp": SDP}}) == Answer(
        to="user:2", sdp=SDP
    )
    assert p({"type": "chat", "text": "Bonjour"}) == Chat(text="Bonjour")
    assert p({"type": "leave"}) == Leave()
    assert p({"type": "admit", "peer_id": "guest:7"}) == Admit(peer_id="guest:7")
    assert p({"type": "end"}) == End(outcome="completed", note="")
    assert p({"type": "end", "outcome": "no_show", "note": "patient absent"}) == End(
        "no_show", "patient absent"
    )


def test_a_trickled_candidate_keeps_only_the_rtcicecandidateinit_members() -> None:
    init = {
        "candidate": "candidate:1 1 udp 2130706431 10.0.0.2 50000 typ host",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
        "usernameFragment": "u1",
        "extra": "dropped",
    }
    parsed = p({"type": "candidate", "to": "user:1", "candidate": init})
    assert isinstance(parsed, Candidate)
    assert parsed.candidate == {k: v for k, v in init.items() if k != "extra"}
    assert p({"type": "candidate", "to": "user:1", "candidate": None}) == Candidate("user:1", None)
    bare = p({"type": "candidate", "to": "user:1", "candidate": init["candidate"]})
    assert isinstance(bare, Candidate) and bare.candidate == {
        "candidate": init["candidate"],
        "sdpMid": None,
        "sdpMLineIndex": None,
    }


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", "not_json"),
        ("[1, 2]", "not_json"),
        (b"\xff\xfe", "not_json"),
        ('"offer"', "not_json"),
        ('{"type": "teleport"}', "unknown_type"),
        ('{"to": "user:1"}', "unknown_type"),
        ('{"type": 3}', "unknown_type"),
        ('{"type": "offer", "to": "user:1"}', "invalid_message"),
        ('{"type": "offer", "sdp": "v=0"}', "invalid_message"),
        ('{"type": "offer", "to": "user:1", "sdp": "hello"}', "invalid_message"),
        ('{"type": "answer", "to": 5, "sdp": "v=0"}', "invalid_message"),
        ('{"type": "candidate", "to": "user:1"}', "invalid_message"),
        ('{"type": "candidate", "to": "user:1", "candidate": {"sdpMid": "0"}}', "invalid_message"),
        (
            '{"type": "candidate", "to": "user:1", "candidate": {"candidate": "c", "sdpMLineIndex": "0"}}',
            "invalid_message",
        ),
        (
            '{"type": "candidate", "to": "user:1", "candidate": {"candidate": "c", "sdpMLineIndex": true}}',
            "invalid_message",
        ),
        ('{"type": "chat", "text": "   "}', "invalid_message"),
        ('{"type": "chat"}', "invalid_message"),
        ('{"type": "admit"}', "invalid_message"),
        ('{"type": "end", "outcome": "great"}', "invalid_message"),
    ],
)
def test_malformed_messages_say_what_is_wrong(raw: str | bytes, code: str) -> None:
    assert code_of(raw) == code


def test_size_is_counted_in_bytes_before_anything_is_parsed() -> None:
    arabic = json.dumps({"type": "chat", "text": "ب" * 600}, ensure_ascii=False)
    assert len(arabic) < 1024 < len(arabic.encode())
    assert code_of(arabic, max_bytes=1024) == "too_large"
    assert code_of("x" * 2000, max_bytes=1024) == "too_large"
    assert isinstance(parse(arabic, max_bytes=LIMIT), Chat)
    assert (
        code_of(json.dumps({"type": "chat", "text": "x" * (protocol.CHAT_MAX_CHARS + 1)}))
        == "invalid_message"
    )


def test_the_bucket_allows_a_second_of_burst_then_the_rate() -> None:
    bucket = TokenBucket.full(10, now=100.0)
    assert all(bucket.take(100.0) for _ in range(10))
    assert not bucket.take(100.0)
    assert sum(bucket.take(100.5) for _ in range(10)) == 5
    assert sum(bucket.take(102.0) for _ in range(50)) == 10  # refills up to the burst only
    slow = TokenBucket.full(0.5, now=0.0)
    assert slow.take(0.0) and not slow.take(1.0) and slow.take(2.0)


def test_browsers_of_other_sites_are_refused_and_non_browsers_judged_by_token() -> None:
    def same(origin: str | None) -> bool:
        return origins.allowed(origin, host="127.0.0.1:8000", allowed_origins=[])

    assert same(None)
    assert same("http://127.0.0.1:8000")
    assert not same("http://127.0.0.1:8001")
    assert not same("https://evil.example")
    assert not same("null")
    assert origins.allowed("https://jisr.example.org", host="jisr.example.org", allowed_origins=[])
    assert origins.allowed(
        "HTTPS://Jisr.Example.org:443", host="jisr.example.org", allowed_origins=[]
    )
    assert not origins.allowed(
        "http://jisr.example.org", host="jisr.example.org:443", allowed_origins=[]
    )
    assert not origins.allowed("https://jisr.example.org", host=None, allowed_origins=[])
    listed = ["https://clinic.example.org", "http://localhost:5173/"]
    assert origins.allowed(
        "https://clinic.example.org", host="api.internal", allowed_origins=listed
    )
    assert origins.allowed("http://localhost:5173", host="api.internal", allowed_origins=listed)
    assert not origins.allowed("https://api.internal", host="api.internal", allowed_origins=listed)
    assert not origins.allowed(
        "https://clinic.example.org.evil.example", host="x", allowed_origins=listed
    )


def test_the_public_surface_is_what_it_says() -> None:
    from services.teleconsult.signalling import bus, router

    for module in (protocol, bus, router):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
