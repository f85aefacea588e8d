from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from calnotify.db.base import Base, JSONType
from calnotify.models._mixins import IdMixin, TimestampsMixin


class Calendar(IdMixin, TimestampsMixin, Base):
    """A bookable calendar; its notification rules live in ``notifications``."""

    __tablename__ = "calendars"
    __table_args__ = (Index(None, "location_id", "deleted"),)

    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    calendar_type: Mapped[str] = mapped_column(String(32), default="event")
    slot_duration: Mapped[float] = mapped_column(Float, default=30)
    slot_duration_unit: Mapped[str] = mapped_column(String(8), default="mins")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    auto_confirm: Mapped[bool] = mapped_column(Boolean, default=True)
    team_members: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    # Other fields of HighLevel's CalendarDTO, stored as given and echoed back.
    extra: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
