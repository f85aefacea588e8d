"""Settings, read once from the environment (prefix ``CALNOTIFY_``).

Every setting is documented in the README with its default.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CALNOTIFY_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///./calnotify.db",
        description="Database URL: sqlite:///path or postgresql://user@host:port/db.",
    )
    database_pool_size: int = Field(default=10, ge=1, le=200)
    # PostgreSQL plans the busy statements once per connection (PREPARE); off behind a
    # pooler that shares server sessions between clients (PgBouncer's transaction mode).
    database_prepare: bool = True
    sqlite_busy_timeout_ms: int = Field(default=10_000, ge=0)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    log_level: str = Field(default="info")
    dispatch_batch_size: int = Field(default=200, ge=1, le=5000)
    dispatch_concurrency: int = Field(default=2, ge=1, le=64)
    dispatch_poll_interval: float = Field(default=0.5, gt=0, le=60)
    dispatch_lease_seconds: float = Field(default=120, ge=5)
    dispatch_max_attempts: int = Field(default=8, ge=1, le=100)
    dispatch_retry_base_seconds: float = Field(default=15, gt=0, le=3600)
    # Recurring series: deliveries exist as rows when due within this many days.
    planning_horizon_days: float = Field(default=31, ge=1, le=366)
    # Messages handed to providers and not yet recorded, at most, per process.
    dispatch_in_flight: int = Field(default=32, ge=1, le=10_000)
    # Wall-clock budget for composing one message (template, HTML-to-text, MIME).
    render_budget_seconds: float = Field(default=2, gt=0, le=60)
    # Render processes per service process (0: one per CPU).
    render_processes: int = Field(default=0, ge=0, le=64)
    # SQLite: a write request is refused (503) when one has waited this long for the writer.
    shed_after_ms: int = Field(default=250, ge=1, le=60_000)
    # While a dispatching process's sends are behind: the write requests it answers at
    # once; one more is refused (503) at once.
    max_writes_in_flight: int = Field(default=16, ge=1, le=100_000)

    # Retention (docs/semantics.md §10), in days from when a thing finished; 0: as soon as
    # it finished. Pruning runs in the background every prune_interval_seconds.
    retain_content_days: int = Field(default=30, ge=0, le=36_500)
    retain_deliveries_days: int = Field(default=400, ge=0, le=36_500)
    retain_events_days: int = Field(default=400, ge=0, le=36_500)
    prune_interval_seconds: float = Field(default=300, ge=1, le=86_400)

    # Operations endpoints.
    metrics_token: SecretStr = SecretStr("")
    # calnotify worker: where it serves /metrics and /healthz (no port: not served).
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    worker_metrics_host: str = "127.0.0.1"
    sse_streams_per_token: int = Field(default=10, ge=1, le=10_000)

    # Email over SMTP; without a host, email goes to the outbox.
    smtp_host: str = ""
    smtp_port: int | None = Field(default=None, ge=1, le=65535)
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_security: Literal["none", "starttls", "tls"] = "starttls"
    smtp_timeout: float = Field(default=30, gt=0)
    smtp_connections: int = Field(default=4, ge=1, le=64)
    email_from: str = "calnotify <notifications@calnotify.invalid>"

    # SMS and WhatsApp over Twilio's Messages API; without an account, they go to the outbox.
    twilio_account_sid: str = ""
    twilio_auth_token: SecretStr = SecretStr("")
    twilio_from_number: str = ""
    twilio_whatsapp_from: str = ""
    twilio_base_url: str = "https://api.twilio.com"
    twilio_timeout: float = Field(default=15, gt=0)

    # Outbound webhooks (docs/semantics.md §8): the longest one POST may take per step
    # (connect, write, each read), and whether endpoints may be private, loopback or
    # link-local addresses (off: a tenant cannot make the service call inside its network).
    webhook_timeout: float = Field(default=10, gt=0, le=120)
    webhook_allow_private: bool = False

    # The address the service is reached at from outside (Twilio status callbacks, the
    # recipients' action links; unset: links point to ``local_url``).
    public_url: str = ""
    # Where action links point while ``public_url`` is not set: this machine, at the port
    # `calnotify serve` listens on (it sets this for itself; a separate worker keeps 8000).
    local_url: str = "http://localhost:8000"
    # How long a link secret retired by `calnotify secrets rotate` still verifies links.
    link_secret_grace_days: float = Field(default=30, ge=0, le=3650)
    # The appointment page (/a/…): requests per minute per link and per client address.
    link_requests_per_minute: int = Field(default=30, ge=1, le=100_000)

    @property
    def links_url(self) -> str:
        """The address action links start with: ``public_url``, else ``local_url``."""
        return (self.public_url.strip() or self.local_url.strip()).rstrip("/")

    @property
    def smtp_configured(self) -> bool:
        return bool(self.smtp_host)

    @property
    def twilio_configured(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token.get_secret_value())

    @property
    def smtp_port_or_default(self) -> int:
        if self.smtp_port:
            return self.smtp_port
        return {"none": 25, "starttls": 587, "tls": 465}[self.smtp_security]

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.lower()
        if level not in {"critical", "error", "warning", "info", "debug"}:
            raise ValueError("allowed values are critical, error, warning, info, debug")
        return level


class SettingsError(ValueError):
    """An environment variable holds a value calnotify cannot use; the text names it."""


_SECRET_FIELDS = {"smtp_password", "twilio_auth_token", "metrics_token"}


def load_settings() -> Settings:
    """Settings from the environment; a bad value raises ``SettingsError`` naming its variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            variable = f"CALNOTIFY_{field.upper()}"
            shown = "" if field in _SECRET_FIELDS else f"={error.get('input')!s}"
            reason = error["msg"].removeprefix("Value error, ")
            if error["type"] == "literal_error":
                reason = f"allowed values are {error['ctx']['expected']}"
            problems.append(f"{variable}{shown} is not valid: {reason}")
        raise SettingsError("; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
