from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from calnotify.db.base import Base
from calnotify.models._mixins import IdMixin

#: The longest reply body kept (Twilio joins a long SMS into at most 1,600 characters).
MAX_BODY = 1600


class ReplyAction(StrEnum):
    """What a reply did (docs/semantics.md §8, "Replies")."""

    CONFIRMED = "confirmed"
    OPTED_OUT = "opted_out"
    OPTED_IN = "opted_in"
    HELP = "help"
    NONE = "none"


class InboundMessage(IdMixin, Base):
    """A message a recipient sent to one of the deployment's numbers (SMS or WhatsApp).

    ``location_id``, ``contact_id`` and ``appointment_id`` are what the reply was matched
    to, each empty (NULL) when nothing matched; ``action`` is what it did.
    """

    __tablename__ = "inbound_messages"
    __table_args__ = (
        Index(None, "location_id", "received_at"),
        Index(None, "appointment_id", "received_at"),
        Index(None, "received_at"),
    )

    location_id: Mapped[str | None] = mapped_column(
        ForeignKey("locations.id", ondelete="CASCADE"), default=None
    )
    contact_id: Mapped[str | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL"), default=None
    )
    appointment_id: Mapped[str | None] = mapped_column(
        ForeignKey("appointments.id", ondelete="SET NULL"), default=None
    )
    channel: Mapped[str] = mapped_column(String(16))  # sms · whatsapp
    from_number: Mapped[str] = mapped_column(String(64))
    to_number: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text, default="")
    provider_message_id: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(16), default=ReplyAction.NONE)
    received_at: Mapped[datetime]
