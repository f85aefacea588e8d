from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, false
from sqlalchemy.orm import Mapped, mapped_column

from calnotify.db.base import Base, JSONType
from calnotify.models._mixins import IdMixin, TimestampsMixin


class ApiToken(IdMixin, TimestampsMixin, Base):
    """A location access token, or an operator token (``operator``, no location: the
    console of every location, never the API). Only the SHA-256 of the secret is stored."""

    __tablename__ = "api_tokens"

    location_id: Mapped[str | None] = mapped_column(
        ForeignKey("locations.id", ondelete="CASCADE"), index=True
    )
    operator: Mapped[bool] = mapped_column(default=False, server_default=false())
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSONType)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
