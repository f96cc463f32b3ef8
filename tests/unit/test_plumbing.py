"""Settings, languages and logs: the plumbing every service relies on."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

import shared.entitlements
import shared.i18n
from shared.i18n import negotiate, translate
from shared.logs import JsonFormatter, request_id_var
from shared.settings import Settings


def test_production_refuses_development_secrets_and_sqlite() -> None:
    real = {
        "admin_password": "a-real-secret",
        "database_url": "postgresql+asyncpg://db/jisr",
        "pseudonym_secret": "a-real-pseudonym-key",
        "turn_secret": "a-real-turn-secret",
    }
    for missing, variable in (
        ("admin_password", "JISR_ADMIN_PASSWORD"),
        ("database_url", "JISR_DATABASE_URL"),
        ("pseudonym_secret", "JISR_PSEUDONYM_SECRET"),
        ("turn_secret", "JISR_TURN_SECRET"),
    ):
        given = {k: v for k, v in real.items() if k != missing}
        with pytest.raises(ValidationError, match=variable):
            Settings(environment="production", **given)
    ok = Settings(environment="production", **real)
    assert ok.resolved_database_url == "postgresql+asyncpg://db/jisr"


def test_the_embedded_default_is_sqlite_in_the_data_directory(tmp_path: object) -> None:
    settings = Settings(data_dir="var")
    assert settings.resolved_database_url.startswith("sqlite+aiosqlite:///")
    assert settings.resolved_database_url.endswith("/var/jisr.db")
    assert settings.broker_url == "memory://"


def test_settings_come_from_jisr_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JISR_BROKER_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("JISR_ACCESS_TOKEN_TTL_S", "900")
    settings = Settings()
    assert settings.broker_url == "redis://127.0.0.1:6379/0" and settings.access_token_ttl_s == 900
    monkeypatch.setenv("JISR_ACCESS_TOKEN_TTL_S", "5")
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize(
    ("header", "preferred", "expected"),
    [
        ("fr-FR,fr;q=0.9,en;q=0.8", (), "fr"),
        ("ar-DZ", (), "ar"),
        ("de-DE,de;q=0.9", ("ar",), "ar"),
        ("en;q=0.2,fr;q=0.8", (), "fr"),
        ("fr;q=0", ("ar",), "ar"),
        ("garbage;q=x", (), "en"),
        (None, ("fr", "ar"), "fr"),
        (None, (), "en"),
    ],
)
def test_the_language_is_negotiated(
    header: str | None, preferred: tuple[str, ...], expected: str
) -> None:
    assert negotiate(header, preferred) == expected


def test_a_missing_translation_falls_back_to_english_then_to_its_id() -> None:
    assert translate("problem.not_found", "zz") == "Not found"
    assert translate("no.such.message", "fr") == "no.such.message"
    assert translate("decision.agreement_expired", "fr", agreement="A") == translate(
        "decision.agreement_expired", "fr", agreement="A"
    )


def test_every_message_exists_in_the_three_languages() -> None:
    folder = Path(shared.i18n.__file__).parent
    for topic in [folder, *(p for p in folder.iterdir() if p.is_dir() and p.name != "__pycache__")]:
        keys = {
            lang: set(json.loads((topic / f"{lang}.json").read_text(encoding="utf-8")))
            for lang in ("en", "fr", "ar")
        }
        assert keys["fr"] == keys["en"] == keys["ar"], topic.name


def test_log_lines_are_json_with_the_request_id() -> None:
    token = request_id_var.set("req-123")
    try:
        record = logging.LogRecord(
            "jisr.test", logging.INFO, __file__, 1, "hello %s", ("world",), None
        )
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["message"] == "hello world" and line["request_id"] == "req-123"
    assert line["level"] == "INFO" and line["logger"] == "jisr.test"


def test_the_entitlements_package_exports_what_it_documents() -> None:
    for name in shared.entitlements.__all__:
        assert hasattr(shared.entitlements, name), name
    assert "decide" in shared.entitlements.__all__
