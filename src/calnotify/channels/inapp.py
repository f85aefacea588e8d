"""The in-app channel: an inbox item for the user, written to the database."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from calnotify.channels.base import Message
from calnotify.channels.recorded import RecordingAdapter
from calnotify.clock import Clock
from calnotify.db.engine import Database
from calnotify.ids import new_id
from calnotify.models import InboxItem

InboxListener = Callable[[str, str], None]  # (user id, inbox item id)


class InAppAdapter(RecordingAdapter):
    provider = "inbox"
    model = InboxItem

    def __init__(self, db: Database, clock: Clock) -> None:
        super().__init__(db, clock)
        self.listeners: list[InboxListener] = []

    def row(self, message: Message) -> dict[str, Any]:
        return {
            "id": new_id(),
            "location_id": message.location_id,
            "user_id": message.user_id,
            "delivery_id": message.delivery_id,
            "appointment_id": message.appointment_id,
            "notification_type": message.notification_type,
            "title": message.subject,
            "body": message.body,
            "created_at": self.clock.now(),
        }

    def recorded(self, message: Message, row_id: str) -> None:
        for listener in self.listeners:
            listener(message.user_id, row_id)
