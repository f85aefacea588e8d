from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from calnotify.db.base import Base
from calnotify.models.appointment import AutoIncrement


class LinkSecret(Base):
    """A server secret that signs the recipients' action links (docs/semantics.md §8).

    The newest row signs; a row ``retired_at`` (by ``calnotify secrets rotate``) still
    verifies the links it signed for ``CALNOTIFY_LINK_SECRET_GRACE_DAYS``.
    """

    __tablename__ = "link_secrets"

    id: Mapped[int] = mapped_column(AutoIncrement, primary_key=True, autoincrement=True)
    secret: Mapped[str] = mapped_column(String(64))  # base64url of 32 random bytes
    created_at: Mapped[datetime]
    retired_at: Mapped[datetime | None] = mapped_column(default=None)
