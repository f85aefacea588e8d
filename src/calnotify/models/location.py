from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from calnotify.db.base import Base
from calnotify.models._mixins import IdMixin, TimestampsMixin


class Location(IdMixin, TimestampsMixin, Base):
    """A sub-account: the tenant every other row belongs to."""

    __tablename__ = "locations"

    name: Mapped[str] = mapped_column(String(255))
    email: Mapped[str] = mapped_column(String(320), default="")
    phone: Mapped[str] = mapped_column(String(32), default="")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    address: Mapped[str] = mapped_column(String(255), default="")
    city: Mapped[str] = mapped_column(String(255), default="")
    state: Mapped[str] = mapped_column(String(255), default="")
    country: Mapped[str] = mapped_column(String(64), default="")
    postal_code: Mapped[str] = mapped_column(String(32), default="")
    website: Mapped[str] = mapped_column(String(2048), default="")
    # Replies by SMS and WhatsApp (calnotify.replies): the words that confirm, separated by
    # commas (empty: the defaults), and the answer to HELP (empty: name and phone).
    reply_confirm_keywords: Mapped[str] = mapped_column(String(255), default="")
    reply_help: Mapped[str] = mapped_column(String(320), default="")
