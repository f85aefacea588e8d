from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from calnotify.db.base import Base, JSONType
from calnotify.models._mixins import IdMixin, TimestampsMixin


class Calendar(IdMixin, TimestampsMixin, Base):
    """A bookable calendar; its notification rules live in ``notifications``.

    The availability columns are HighLevel's calendar fields of the same names
    (docs/semantics.md §8; ``appointments_per_*`` is HighLevel's ``appoinmentPer*``).
    ``open_hours`` is None until the calendar has opening hours: until then bookings are
    not checked against it.
    """

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
    # HighLevel's openHours as given: [{"daysOfTheWeek": [...], "hours": [{...}]}].
    open_hours: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType, default=None)
    # None: slots start every slot_duration.
    slot_interval: Mapped[float | None] = mapped_column(Float, default=None)
    slot_interval_unit: Mapped[str] = mapped_column(String(8), default="mins")
    slot_buffer: Mapped[float] = mapped_column(Float, default=0)
    slot_buffer_unit: Mapped[str] = mapped_column(String(8), default="mins")
    pre_buffer: Mapped[float] = mapped_column(Float, default=0)
    pre_buffer_unit: Mapped[str] = mapped_column(String(8), default="mins")
    appointments_per_slot: Mapped[int] = mapped_column(Integer, default=1)
    appointments_per_day: Mapped[int] = mapped_column(Integer, default=0)  # 0: no limit
    allow_booking_after: Mapped[float] = mapped_column(Float, default=0)
    allow_booking_after_unit: Mapped[str] = mapped_column(String(8), default="hours")
    allow_booking_for: Mapped[float] = mapped_column(Float, default=0)  # 0: no limit
    allow_booking_for_unit: Mapped[str] = mapped_column(String(8), default="days")
    allow_reschedule: Mapped[bool] = mapped_column(Boolean, default=True)
    allow_cancellation: Mapped[bool] = mapped_column(Boolean, default=True)
    # Other fields of HighLevel's CalendarDTO, stored as given and echoed back.
    extra: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
