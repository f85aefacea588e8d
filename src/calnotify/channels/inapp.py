"""The in-app channel: an inbox item for the user, written to the database."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from calnotify.channels.base import ChannelAdapter, Message, Receipt, RetryableSendError, SendError
from calnotify.clock import Clock
from calnotify.db.dialect import insert_ignoring_conflicts
from calnotify.db.engine import Database
from calnotify.ids import new_id
from calnotify.models import InboxItem

InboxListener = Callable[[str, str], None]  # (user id, inbox item id)


class InAppAdapter(ChannelAdapter):
    provider = "inbox"

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self.listeners: list[InboxListener] = []

    async def send(self, message: Message) -> Receipt:
        [result] = await self.send_many([message])
        if isinstance(result, SendError):
            raise result
        return result

    async def send_many(self, messages: Sequence[Message]) -> list[Receipt | SendError]:
        if not messages:
            return []
        now = self.clock.now()
        rows = [
            {
                "id": new_id(),
                "location_id": m.location_id,
                "user_id": m.user_id,
                "delivery_id": m.delivery_id,
                "appointment_id": m.appointment_id,
                "notification_type": m.notification_type,
                "title": m.subject,
                "body": m.body,
                "created_at": now,
            }
            for m in messages
        ]
        statement = insert_ignoring_conflicts(InboxItem.__table__, self.db.dialect, "delivery_id")
        try:
            async with self.db.session() as session:
                await session.execute(statement, rows)
                stored = await session.execute(
                    select(InboxItem.delivery_id, InboxItem.id).where(
                        InboxItem.delivery_id.in_([m.delivery_id for m in messages])
                    )
                )
                ids = {row[0]: row[1] for row in stored}
        except SQLAlchemyError as exc:
            error = RetryableSendError(f"inbox write failed: {type(exc).__name__}")
            return [error for _ in messages]
        for m in messages:
            for listener in self.listeners:
                listener(m.user_id, ids.get(m.delivery_id, ""))
        return [Receipt(self.provider, ids.get(m.delivery_id, "")) for m in messages]
