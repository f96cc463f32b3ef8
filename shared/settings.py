"""Configuration from `JISR_*` environment variables, with embedded defaults.

The defaults run the whole platform in one process on one laptop: SQLite and
files under `var/`, Celery on an in-process worker. Production sets
`JISR_ENVIRONMENT=production`, which refuses the development secrets.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_ADMIN_PASSWORD = "admin"  # noqa: S105 - the documented embedded default, refused in production


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JISR_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path("var")
    database_url: str = ""
    """SQLAlchemy async URL; empty means SQLite in `data_dir`."""
    database_echo: bool = False

    # Celery: "memory://" runs tasks on a worker thread inside the web process.
    broker_url: str = "memory://"
    result_backend: str | None = None
    """None: tasks report progress in our own tables, not through Celery results."""
    task_visibility_timeout_s: int = 4 * 3600
    expiry_check_interval_s: int = Field(default=3600, ge=1)
    """How often beat marks lapsed agreements expired."""
    escalation_interval_s: int = Field(default=300, ge=1)
    """How often beat looks for referrals whose provider has not answered in time."""

    # Identity.
    admin_password: str = DEV_ADMIN_PASSWORD
    jwt_issuer: str = "jisr"
    jwt_audience: str = "jisr"
    access_token_ttl_s: int = Field(default=3600, ge=60, le=24 * 3600)
    signing_key_path: Path | None = None
    """PEM private key for issuing tokens; generated under `data_dir` when unset."""
    oidc_issuer: str | None = None
    """When set, tokens come from this OIDC issuer (validated through its JWKS)."""
    oidc_jwks_url: str | None = None
    oidc_audience: str | None = None
    oidc_username_claim: str = "preferred_username"

    # Patient data.
    pseudonym_secret: str = "development-pseudonym-secret"  # noqa: S105 - refused in production
    """Key of the per-agreement patient pseudonyms; changing it changes every pseudonym."""
    attachment_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)

    # E-mail of notifications (SMTP); without a host, notifications stay in the application.
    smtp_host: str | None = None
    """SMTP relay host; None (or empty), the embedded default, turns e-mail off."""
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_from: str = "jisr@localhost"
    """The From address of notification e-mail; its domain also names the Message-IDs."""
    smtp_username: str | None = None
    """Log in (SMTP AUTH) as this user when set; use it with `smtp_starttls` over a network."""
    smtp_password: str | None = None
    smtp_starttls: bool = False
    """Upgrade the connection with STARTTLS (RFC 3207), verifying the server's certificate."""
    smtp_timeout_s: float = Field(default=30.0, gt=0, le=600)

    # Imaging.
    orthanc_username: str | None = None
    """Credentials of the institutions' Orthanc stores (Institution.imaging_store URLs)."""
    orthanc_password: str | None = None
    shared_store_url: str | None = None
    """Orthanc holding de-identified copies for partners; None: files under data_dir/imaging/shared."""
    shared_store_username: str | None = None
    shared_store_password: str | None = None
    imaging_accel_redirect: str | None = Field(default=None, pattern=r"^/[A-Za-z0-9_/-]*/$")
    """nginx's internal location for the shared Orthanc's WADO-RS (`/_jisr/shared-store/`
    in infra/nginx/jisr.conf.template): after the entitlement check the imaging service
    answers `X-Accel-Redirect` there and nginx sends Orthanc's bytes itself. None (the
    embedded default, and always with the file store): the service streams them."""
    stow_max_bytes: int = Field(default=2 * 1024**3, ge=1024)
    """Largest STOW-RS request body accepted."""

    # Teleconsultation.
    signalling_url: str = "memory://"
    """Where rooms fan out: "memory://" (one process) or a Redis URL shared by every replica."""
    turn_urls: list[str] = Field(default_factory=list)
    """TURN servers handed to peers, e.g. ["turn:turn.example.org:3478?transport=udp"]."""
    stun_urls: list[str] = Field(default_factory=list)
    """STUN servers handed to peers; empty means none (never a public default)."""
    turn_secret: str = "development-turn-secret"  # noqa: S105 - refused in production
    """coturn's `static-auth-secret` (REST-API credentials, `use-auth-secret`)."""
    join_token_ttl_s: int = Field(default=120, ge=10, le=3600)
    """How long a join token opens the room; the signalling socket checks it once, at connect."""
    teleconsult_max_participants: int = Field(default=6, ge=2, le=50)
    allowed_origins: list[str] = Field(default_factory=list)
    """Browser origins allowed to open signalling sockets; empty: the app's own origin only."""
    signalling_max_message_bytes: int = Field(default=64 * 1024, ge=1024)
    signalling_max_messages_per_s: float = Field(default=50.0, gt=0)
    teleconsult_join_early_s: int = Field(default=600, ge=0, le=24 * 3600)
    """How long before its slot a teleconsult may be joined."""
    teleconsult_overrun_s: int = Field(default=1800, ge=0, le=24 * 3600)
    """How long after its scheduled end a teleconsult may still be joined; TURN credentials last as long."""
    recorder_signalling_url: str | None = None
    """Where the recorder process reaches the signalling socket, e.g. ws://teleconsult:8000 in
    compose; None: this machine's own service at host:port."""
    recorder_host_address: str | None = None
    """Gather the recorder's ICE host candidates on this address only. A test/loopback aid
    (aioice skips 127.0.0.1 otherwise); leave unset in production."""

    # The organisation running the platform: its admins and auditors act platform-wide.
    operator_code: str = "JISR"
    operator_name: str = "Jisr platform operator"
    operator_country: str = Field(default="DZ", pattern=r"^[A-Z]{2}$")
    operator_timezone: str = "Africa/Algiers"

    # HTTP.
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = Field(default="", pattern=r"^(https?://[^/?#\s]+)?$")
    """The platform's address as clients reach it (`https://jisr.example.org`), for the URLs
    its answers carry (DICOMweb Retrieve URLs); empty: the request's own `Host`. Some clients
    send `Host` without the port (dicomweb-client does), which then drops from those URLs."""
    log_level: str = "INFO"
    log_json: bool = True
    seed_demo: bool = True

    @model_validator(mode="after")
    def _refuse_dev_secrets_in_production(self) -> Settings:
        if self.environment == "production":
            if self.admin_password == DEV_ADMIN_PASSWORD:
                raise ValueError(
                    "set JISR_ADMIN_PASSWORD: the development default is refused in production"
                )
            if not self.database_url:
                raise ValueError("set JISR_DATABASE_URL in production")
            if self.pseudonym_secret == "development-pseudonym-secret":  # noqa: S105
                raise ValueError(
                    "set JISR_PSEUDONYM_SECRET: the development default is refused in production"
                )
            if self.turn_secret == "development-turn-secret":  # noqa: S105
                raise ValueError(
                    "set JISR_TURN_SECRET: the development default is refused in production"
                )
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'jisr.db').resolve()}"

    @property
    def ws_max_size(self) -> int:
        """The largest WebSocket frame the server reads: uvicorn buffers a frame whole
        before our size check sees it, so its own cap must sit near ours (default 16 MiB)."""
        return 4 * self.signalling_max_message_bytes

    @property
    def key_path(self) -> Path:
        return self.signing_key_path or self.data_dir / "keys" / "signing-key.pem"


@lru_cache
def get_settings() -> Settings:
    return Settings()
