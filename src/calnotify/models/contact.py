from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from calnotify.db.base import Base, JSONType
from calnotify.models._mixins import IdMixin, TimestampsMixin


class Contact(IdMixin, TimestampsMixin, Base):
    """A customer of a location: who books appointments and receives contact notifications."""

    __tablename__ = "contacts"
    __table_args__ = (
        Index(None, "location_id", "deleted"),
        # Who a reply by SMS or WhatsApp comes from (in one location, or in any).
        Index(None, "phone", "location_id"),
    )

    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"))
    first_name: Mapped[str] = mapped_column(String(255), default="")
    last_name: Mapped[str] = mapped_column(String(255), default="")
    email: Mapped[str] = mapped_column(String(320), default="")
    phone: Mapped[str] = mapped_column(String(32), default="")
    timezone: Mapped[str] = mapped_column(String(64), default="")
    company_name: Mapped[str] = mapped_column(String(255), default="")
    address1: Mapped[str] = mapped_column(String(255), default="")
    city: Mapped[str] = mapped_column(String(255), default="")
    state: Mapped[str] = mapped_column(String(255), default="")
    country: Mapped[str] = mapped_column(String(64), default="")
    postal_code: Mapped[str] = mapped_column(String(32), default="")
    website: Mapped[str] = mapped_column(String(2048), default="")
    source: Mapped[str] = mapped_column(String(255), default="")
    dnd: Mapped[bool] = mapped_column(Boolean, default=False)
    dnd_settings: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # Other fields of HighLevel's contact, stored as given and echoed back.
    extra: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)

    @property
    def name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p)
