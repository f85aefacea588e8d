"""Settings, read once from the environment (prefix ``CALNOTIFY_``).

Every setting is documented in the README with its default.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CALNOTIFY_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///./calnotify.db",
        description="Database URL: sqlite:///path or postgresql://user@host:port/db.",
    )
    database_pool_size: int = Field(default=10, ge=1, le=200)
    sqlite_busy_timeout_ms: int = Field(default=10_000, ge=0)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    log_level: str = Field(default="info")
    dispatch_batch_size: int = Field(default=200, ge=1, le=5000)
    dispatch_concurrency: int = Field(default=2, ge=1, le=64)
    dispatch_poll_interval: float = Field(default=0.5, gt=0, le=60)
    dispatch_lease_seconds: float = Field(default=120, ge=5)
    dispatch_max_attempts: int = Field(default=8, ge=1, le=100)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.lower()
        if level not in {"critical", "error", "warning", "info", "debug"}:
            raise ValueError("must be one of critical, error, warning, info, debug")
        return level


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
