from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from calnotify.db.base import Base, JSONType
from calnotify.models._mixins import IdMixin, TimestampsMixin


class ReceiverType(StrEnum):
    CONTACT = "contact"
    GUEST = "guest"
    ASSIGNED_USER = "assignedUser"
    EMAILS = "emails"
    PHONE_NUMBERS = "phoneNumbers"
    BUSINESS = "business"


class Channel(StrEnum):
    EMAIL = "email"
    IN_APP = "inApp"
    SMS = "sms"
    WHATSAPP = "whatsapp"


class NotificationType(StrEnum):
    BOOKED = "booked"
    CONFIRMATION = "confirmation"
    CANCELLATION = "cancellation"
    REMINDER = "reminder"
    FOLLOWUP = "followup"
    RESCHEDULE = "reschedule"


class Notification(IdMixin, TimestampsMixin, Base):
    """One notification rule of a calendar (HighLevel's CalendarNotification)."""

    __tablename__ = "notifications"
    __table_args__ = (Index(None, "calendar_id", "date_added", "batch_index"),)

    location_id: Mapped[str] = mapped_column(
        ForeignKey("locations.id", ondelete="CASCADE"), index=True
    )
    calendar_id: Mapped[str] = mapped_column(ForeignKey("calendars.id", ondelete="CASCADE"))
    receiver_type: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    notification_type: Mapped[str] = mapped_column(String(16))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    template_id: Mapped[str] = mapped_column(String(4096), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    subject: Mapped[str] = mapped_column(String(255), default="")
    after_time: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    before_time: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    additional_email_ids: Mapped[list[str]] = mapped_column(JSONType, default=list)
    additional_phone_numbers: Mapped[list[str]] = mapped_column(JSONType, default=list)
    selected_users: Mapped[list[str]] = mapped_column(JSONType, default=list)
    from_address: Mapped[str] = mapped_column(String(4096), default="")
    from_name: Mapped[str] = mapped_column(String(4096), default="")
    from_number: Mapped[str] = mapped_column(String(4096), default="")
    # Creation order: rows of one POST share date_added and keep their array position.
    batch_index: Mapped[int] = mapped_column(Integer, default=0)
    # Bumped on every change of what deliveries are planned from (receivers, channel,
    # type, schedule, active, deleted; not the wording, rendered at send time); deliveries
    # remember the version they were planned from.
    version: Mapped[int] = mapped_column(Integer, default=1)
    # The version whose re-planning is complete; lower while a planning job is under way.
    planned_version: Mapped[int] = mapped_column(Integer, default=1)
