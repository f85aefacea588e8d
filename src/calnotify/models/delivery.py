from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from calnotify.db.base import Base
from calnotify.models._mixins import IdMixin


class RecipientKind(StrEnum):
    """How a delivery's address is found when it is sent."""

    CONTACT = "contact"  # the appointment's contact
    USER = "user"  # a user of the location (recipient_ref = user id)
    GUEST = "guest"  # a guest of the appointment (recipient_ref = the guest's email)
    ADDRESS = "address"  # a literal email address or phone number (recipient_ref)
    LOCATION = "location"  # the location's own email
    WEBHOOK = "webhook"  # a webhook endpoint of the location (recipient_ref = its id)


class Trigger(StrEnum):
    EVENT = "event"  # sent at once because the appointment changed
    SCHEDULE = "schedule"  # a reminder or follow-up at an offset


_DUE = text("status = 'scheduled'")
_LEASED = text("status = 'sending'")
# Finished deliveries, by when they finished (retention, docs/semantics.md §10): the
# indexes hold no pending row, so planning and claiming never pay for them.
FINISHED_SQL = "status IN ('sent', 'failed', 'cancelled', 'skipped')"
_ENDED = text(FINISHED_SQL)
_CONTENT_KEPT = text(f"{FINISHED_SQL} AND content_removed_at IS NULL")


class Delivery(IdMixin, Base):
    """One message to one recipient: the schedule is this table.

    ``status``, ``reason`` and ``attempts`` are written only by deliveries/lifecycle/.

    ``run_at`` is when it may next be claimed (its due time, or a retry's); ``due_at`` never
    moves, so lateness is ``sent_at - due_at``.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_deliveries_due", "run_at", postgresql_where=_DUE, sqlite_where=_DUE),
        Index(
            "ix_deliveries_leased", "lease_until", postgresql_where=_LEASED, sqlite_where=_LEASED
        ),
        Index(None, "appointment_id", "status"),
        Index(None, "notification_id", "status"),
        # GET /deliveries lists a location's in due order: read in that order, not sorted.
        Index(None, "location_id", "due_at", "id"),
        Index(None, "master_event_id", "due_at"),
        Index("ix_deliveries_finished", "updated_at", postgresql_where=_ENDED, sqlite_where=_ENDED),
        Index(
            "ix_deliveries_content_kept",
            "updated_at",
            postgresql_where=_CONTENT_KEPT,
            sqlite_where=_CONTENT_KEPT,
        ),
    )

    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"))
    calendar_id: Mapped[str] = mapped_column(String(20))
    # None only for a webhook of a reply that matched no appointment.
    appointment_id: Mapped[str | None] = mapped_column(
        ForeignKey("appointments.id", ondelete="CASCADE")
    )
    # An occurrence of a series: its instance id (``appointmentId`` on the wire) and the
    # series' master id; empty otherwise.
    instance_id: Mapped[str] = mapped_column(String(48), default="")
    master_event_id: Mapped[str] = mapped_column(String(20), default="")
    # None for a webhook (``recipient_ref``: its endpoint's id).
    notification_id: Mapped[str | None] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE")
    )
    notification_type: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    receiver_type: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str] = mapped_column(String(16))
    recipient_kind: Mapped[str] = mapped_column(String(16))
    recipient_ref: Mapped[str] = mapped_column(String(320), default="")
    recipient: Mapped[str] = mapped_column(String(320), default="")
    # Who it went out as: From (and Reply-To) for email, the number for SMS/WhatsApp.
    sender: Mapped[str] = mapped_column(String(1024), default="")
    status: Mapped[str] = mapped_column(String(16), default="scheduled")
    reason: Mapped[str] = mapped_column(String(32), default="")
    due_at: Mapped[datetime]
    run_at: Mapped[datetime]
    deadline_at: Mapped[datetime]
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    # Messages handed to a provider so far; counted at the hand-over, before the provider is
    # called, so a crash or an expired lease can never make a message go out more often.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When the attempt in progress was handed over (None: none in progress).
    handed_over_at: Mapped[datetime | None] = mapped_column(default=None)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    claim_token: Mapped[str | None] = mapped_column(String(32), default=None)
    appointment_version: Mapped[int] = mapped_column(Integer)
    notification_version: Mapped[int] = mapped_column(Integer)
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    provider: Mapped[str] = mapped_column(String(16), default="")
    provider_message_id: Mapped[str] = mapped_column(String(255), default="", index=True)
    # What the provider reported later (Twilio status callbacks): delivered, undelivered, …
    provider_status: Mapped[str] = mapped_column(String(32), default="")
    provider_status_at: Mapped[datetime | None] = mapped_column(default=None)
    subject: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    # A resend asked for by hand (docs/semantics.md §6): the delivery it
    # resends, who asked ("token:<id>") and when.
    resend_of: Mapped[str] = mapped_column(String(20), default="", index=True)
    requested_by: Mapped[str] = mapped_column(String(64), default="")
    requested_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # When retention removed the subject, body and provider answers (docs/semantics.md §10).
    content_removed_at: Mapped[datetime | None] = mapped_column(default=None)


class DeliveryAttempt(IdMixin, Base):
    """One hand-over of a delivery to its provider, and how it ended."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (Index("ix_delivery_attempts_delivery_id_number", "delivery_id", "number"),)

    delivery_id: Mapped[str] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    # sent · retry · failed · unknown (the worker lost the attempt; the provider may have it)
    outcome: Mapped[str] = mapped_column(String(16))
    error: Mapped[str] = mapped_column(Text, default="")
    provider_id: Mapped[str] = mapped_column(String(255), default="")


class OutboxMessage(IdMixin, Base):
    """A message the ``outbox`` adapter recorded instead of handing it to a provider."""

    __tablename__ = "outbox_messages"
    __table_args__ = (Index(None, "location_id", "created_at"),)

    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"))
    delivery_id: Mapped[str] = mapped_column(String(20), unique=True)
    appointment_id: Mapped[str] = mapped_column(String(48), index=True)  # or an instance id
    calendar_id: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str] = mapped_column(String(16))
    to: Mapped[str] = mapped_column(String(320))
    sender: Mapped[str] = mapped_column(String(512), default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]


class InboxItem(IdMixin, Base):
    """An in-app notification in a user's inbox."""

    __tablename__ = "inbox_items"
    __table_args__ = (Index(None, "user_id", "created_at"), Index(None, "read_at"))

    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    delivery_id: Mapped[str] = mapped_column(String(20), unique=True)
    appointment_id: Mapped[str] = mapped_column(String(48))  # or an instance id
    notification_type: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    read_at: Mapped[datetime | None] = mapped_column(default=None)
