"""The ``outbox`` adapter: records each rendered message instead of sending it.

The default for every channel without a provider, so a fresh install works with nothing
configured; ``GET /outbox`` shows what would have gone out. Recording is idempotent per
delivery, so a retried delivery is recorded once.
"""

from __future__ import annotations

from typing import Any

from calnotify.channels.addresses import email_sender
from calnotify.channels.base import Message
from calnotify.channels.recorded import RecordingAdapter
from calnotify.clock import Clock
from calnotify.db.engine import Database
from calnotify.ids import new_id
from calnotify.models import OutboxMessage


class OutboxAdapter(RecordingAdapter):
    provider = "outbox"
    model = OutboxMessage

    def __init__(
        self, db: Database, clock: Clock, email_from: str = "", sms_from: str = ""
    ) -> None:
        super().__init__(db, clock)
        self.email_from = email_from
        self.sms_from = sms_from

    def row(self, message: Message) -> dict[str, Any]:
        return {
            "id": new_id(),
            "location_id": message.location_id,
            "delivery_id": message.delivery_id,
            "appointment_id": message.appointment_id,
            "calendar_id": message.calendar_id,
            "channel": message.channel,
            "to": message.to,
            "sender": self._sender(message),
            "subject": message.subject,
            "body": message.body,
            "created_at": self.clock.now(),
        }

    def _sender(self, message: Message) -> str:
        """The From the real provider would use."""
        if message.channel == "email":
            return email_sender(message, self.email_from)
        return message.from_number or self.sms_from
