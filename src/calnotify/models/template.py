from __future__ import annotations

from sqlalchemy import Boolean, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from calnotify.db.base import Base
from calnotify.models._mixins import IdMixin, TimestampsMixin


class Template(IdMixin, TimestampsMixin, Base):
    """A stored message template of a location (``type``: email, sms or whatsapp)."""

    __tablename__ = "templates"
    __table_args__ = (Index(None, "location_id", "deleted"),)

    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(255), default="")
    html: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
