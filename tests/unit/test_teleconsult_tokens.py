"""Join tokens and session passes: one room each, and never one for the other."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.teleconsult import tokens
from shared.identity.tokens import Keyring
from shared.problems import InvalidToken
from shared.settings import Settings

GRANT = tokens.JoinGrant(
    session_id=12,
    peer="guest:3",
    name="Yacine B.",
    institution="",
    role=tokens.RoomRole.PARTICIPANT,
    kind="patient",
    lang="ar",
)


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> Keyring:
    return Keyring.load_or_create(Path(tmp_path_factory.mktemp("keys")) / "key.pem")


def test_a_pass_is_not_a_join_token_and_the_reverse(keyring: Keyring) -> None:
    settings = Settings(environment="test")
    join, _ = tokens.issue(keyring, settings, GRANT, ttl_s=60)
    session_pass, _ = tokens.issue(keyring, settings, GRANT, ttl_s=600, purpose="pass")
    assert tokens.verify(keyring, settings, join, session_id=12).peer == "guest:3"
    found = tokens.verify(keyring, settings, session_pass, session_id=12, purpose="pass")
    assert (found.kind, found.lang, found.name) == ("patient", "ar", "Yacine B.")
    with pytest.raises(InvalidToken):
        tokens.verify(keyring, settings, session_pass, session_id=12)
    with pytest.raises(InvalidToken):
        tokens.verify(keyring, settings, join, session_id=12, purpose="pass")
    with pytest.raises(InvalidToken, match="another teleconsultation"):
        tokens.verify(keyring, settings, session_pass, session_id=13, purpose="pass")
