from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from calnotify.db.base import Base, JSONType
from calnotify.models._mixins import IdMixin, TimestampsMixin

# SQLite only auto-increments an INTEGER PRIMARY KEY.
AutoIncrement = BigInteger().with_variant(Integer(), "sqlite")


class AppointmentStatus(StrEnum):
    NEW = "new"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    SHOWED = "showed"
    NOSHOW = "noshow"
    INVALID = "invalid"


class Appointment(IdMixin, TimestampsMixin, Base):
    """A booked appointment. ``version`` increases with every change."""

    __tablename__ = "appointments"
    __table_args__ = (
        Index(None, "calendar_id", "start_at"),
        Index(None, "location_id", "assigned_user_id", "start_at"),
        Index(None, "master_id", "original_start_at"),
        # A contact's upcoming appointments (the one a reply by SMS or WhatsApp is for).
        Index(None, "contact_id", "start_at"),
    )

    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"))
    calendar_id: Mapped[str] = mapped_column(ForeignKey("calendars.id", ondelete="CASCADE"))
    contact_id: Mapped[str] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    assigned_user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    start_at: Mapped[datetime]
    end_at: Mapped[datetime]
    title: Mapped[str] = mapped_column(String(4096), default="")
    status: Mapped[str] = mapped_column(String(16), default=AppointmentStatus.NEW)
    address: Mapped[str] = mapped_column(String(4096), default="")
    meeting_location_type: Mapped[str] = mapped_column(String(32), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    to_notify: Mapped[bool] = mapped_column(Boolean, default=True)
    rrule: Mapped[str] = mapped_column(String(4096), default="")
    guests: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    extra: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    version: Mapped[int] = mapped_column(Integer, default=1)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    # Recurring series (docs/recurring.md). A series' master carries the ``rrule``; each of
    # its occurrences that is due for planning is a row of its own with ``master_id`` and
    # the start the rule gave it (``original_start_at``: its instance id, kept when moved).
    master_id: Mapped[str | None] = mapped_column(String(20), default=None)
    original_start_at: Mapped[datetime | None] = mapped_column(default=None)
    # An occurrence changed on its own (PUT on its instance id): series edits leave it be.
    is_exception: Mapped[bool] = mapped_column(Boolean, default=False)
    # On a master: occurrences exist as rows up to here, deliveries are planned up to
    # ``planned_until`` (the rolling horizon).
    materialized_until: Mapped[datetime | None] = mapped_column(default=None)
    planned_until: Mapped[datetime | None] = mapped_column(default=None)


class AppointmentEventKind(StrEnum):
    CREATED = "created"
    STATUS_CHANGED = "status_changed"
    RESCHEDULED = "rescheduled"
    UPDATED = "updated"
    DELETED = "deleted"


class EventSource(StrEnum):
    """Who made a change: a caller of the API, the contact acting on a message, or a
    person at the console (docs/semantics.md §8)."""

    API = "api"
    CONTACT = "contact"
    CONSOLE = "console"


class AppointmentEvent(Base):
    """What happened to an appointment, written in the same transaction as the change.

    ``before``/``after`` are snapshots of the appointment (``None`` before a creation and
    after a deletion). The notification planner works from these. ``source`` says who made
    the change and ``channel`` the channel a contact's action came in by (``sms``,
    ``whatsapp``, ``email``; empty for the API). A change made in the console names the
    token whose session made it (``actor``) and, for a cancellation, the reason (``note``).
    """

    __tablename__ = "appointment_events"
    __table_args__ = (Index(None, "appointment_id", "id"), Index(None, "occurred_at"))

    id: Mapped[int] = mapped_column(AutoIncrement, primary_key=True, autoincrement=True)
    appointment_id: Mapped[str] = mapped_column(ForeignKey("appointments.id", ondelete="CASCADE"))
    location_id: Mapped[str] = mapped_column(String(20), index=True)
    kind: Mapped[str] = mapped_column(String(24))
    appointment_version: Mapped[int] = mapped_column(Integer)
    to_notify: Mapped[bool] = mapped_column(Boolean)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    occurred_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(16), default=EventSource.API)
    channel: Mapped[str] = mapped_column(String(16), default="")
    actor: Mapped[str] = mapped_column(String(64), default="")
    note: Mapped[str] = mapped_column(String(500), default="")
