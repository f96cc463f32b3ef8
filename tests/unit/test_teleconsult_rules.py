"""Pure rules of teleconsults: the join window, the quota effect of outcomes, local slots,
percentiles, and coturn REST-API credentials."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from services.teleconsult import turn
from services.teleconsult.sessions import rules
from services.teleconsult.sessions.models import Outcome, SessionStatus
from shared.settings import Settings

START = datetime(2030, 3, 30, 23, 30, tzinfo=UTC)
END = START + timedelta(minutes=30)


def refusal(now: datetime, status: SessionStatus = SessionStatus.SCHEDULED) -> str | None:
    return rules.join_refusal(
        now, status=status, starts_at=START, ends_at=END, early_s=600, overrun_s=900
    )


def test_the_window_opens_early_and_closes_after_the_overrun() -> None:
    assert rules.join_window(START, END, early_s=600, overrun_s=900) == (
        START - timedelta(minutes=10),
        END + timedelta(minutes=15),
    )
    assert refusal(START - timedelta(minutes=10, seconds=1)) == "too_early"
    assert refusal(START - timedelta(minutes=10)) is None
    assert refusal(START + timedelta(minutes=20), SessionStatus.IN_PROGRESS) is None
    assert refusal(END + timedelta(minutes=15)) is None
    assert refusal(END + timedelta(minutes=15, seconds=1)) == "too_late"


def test_ended_and_cancelled_sessions_refuse_whatever_the_time() -> None:
    assert refusal(START, SessionStatus.ENDED) == "session_ended"
    assert refusal(START, SessionStatus.CANCELLED) == "session_cancelled"


def test_only_a_held_consultation_consumes_its_unit() -> None:
    assert rules.quota_effect(Outcome.COMPLETED) is rules.QuotaEffect.CONSUME
    assert rules.quota_effect(Outcome.NO_SHOW) is rules.QuotaEffect.RELEASE
    assert rules.quota_effect(Outcome.TECHNICAL_FAILURE) is rules.QuotaEffect.RELEASE


def test_local_slots_follow_each_zone_and_its_daylight_saving() -> None:
    # Paris moves to summer time at 01:00 UTC on Sunday 31 March 2030, in the middle of
    # this slot; Algiers keeps UTC+1 all year.
    start = datetime(2030, 3, 31, 0, 30, tzinfo=UTC)
    end = start + timedelta(minutes=30)
    paris = rules.local_slot(start, end, "Europe/Paris")
    assert paris.starts_at.isoformat() == "2030-03-31T01:30:00+01:00"
    assert paris.ends_at.isoformat() == "2030-03-31T03:00:00+02:00"
    assert paris.utc_offset == "+01:00"
    algiers = rules.local_slot(start, end, "Africa/Algiers")
    assert algiers.starts_at.isoformat() == "2030-03-31T01:30:00+01:00"
    assert algiers.ends_at.isoformat() == "2030-03-31T02:00:00+01:00"
    summer = rules.local_slot(datetime(2030, 7, 1, 8, tzinfo=UTC), end, "Europe/Paris")
    assert summer.utc_offset == "+02:00"
    st_johns = rules.local_slot(start, end, "America/St_Johns")
    assert st_johns.utc_offset == "-02:30"
    unknown = rules.local_slot(start, end, "Mars/Olympus_Mons")
    assert (unknown.timezone, unknown.utc_offset) == ("UTC", "+00:00")


def test_percentiles_interpolate_between_ranks() -> None:
    assert rules.percentile([], 50) is None
    assert rules.percentile([7.0], 95) == 7.0
    assert rules.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert rules.percentile([10.0, 20.0, 30.0, 40.0, 50.0], 95) == pytest.approx(48.0)
    spread = rules.Spread.of([None, 3.0, None, 1.0, 2.0])
    assert spread.median == 2.0
    assert spread.p95 == pytest.approx(2.9)


def test_turn_credentials_match_an_independent_hmac() -> None:
    # Reference: printf '%s' '1767225600:user:42' | openssl dgst -sha1 -hmac north-south-twinning
    #            -binary | base64
    creds = turn.turn_credentials("north-south-twinning", "user:42", expires_at=1767225600)
    assert creds.username == "1767225600:user:42"
    assert creds.credential == "YBqMuqn297yFxiE3/kwym43QHgU="
    assert len(base64.b64decode(creds.credential)) == 20  # SHA-1


def test_turn_credentials_last_until_the_end_plus_the_margin_only() -> None:
    settings = Settings(
        environment="test",
        turn_urls=["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"],
        stun_urls=["stun:turn.example.org:3478"],
        turn_secret="s3cret",
        teleconsult_overrun_s=600,
    )
    stun, relay = turn.ice_servers(settings, "guest:7", ends_at=END)
    assert stun == {"urls": ["stun:turn.example.org:3478"]}
    assert relay["urls"] == settings.turn_urls
    assert relay["username"] == f"{int(END.timestamp()) + 600}:guest:7"
    assert (
        relay["credential"]
        == turn.turn_credentials(
            "s3cret", "guest:7", expires_at=int(END.timestamp()) + 600
        ).credential
    )


def test_no_ice_server_is_invented() -> None:
    assert turn.ice_servers(Settings(environment="test"), "user:1", ends_at=END) == []
