"""The ``outbox`` adapter: records each rendered message instead of sending it.

The default for every channel without a provider, so a fresh install works with nothing
configured; ``GET /outbox`` shows what would have gone out. Recording is idempotent per
delivery, so a retried delivery is recorded once.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from calnotify.channels.addresses import email_sender
from calnotify.channels.base import ChannelAdapter, Message, Receipt, RetryableSendError, SendError
from calnotify.clock import Clock
from calnotify.db.dialect import insert_ignoring_conflicts
from calnotify.db.engine import Database
from calnotify.ids import new_id
from calnotify.models import OutboxMessage


class OutboxAdapter(ChannelAdapter):
    provider = "outbox"

    def __init__(
        self, db: Database, clock: Clock, email_from: str = "", sms_from: str = ""
    ) -> None:
        self.db = db
        self.clock = clock
        self.email_from = email_from
        self.sms_from = sms_from

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
                "delivery_id": m.delivery_id,
                "appointment_id": m.appointment_id,
                "calendar_id": m.calendar_id,
                "channel": m.channel,
                "to": m.to,
                "sender": self._sender(m),
                "subject": m.subject,
                "body": m.body,
                "created_at": now,
            }
            for m in messages
        ]
        statement = insert_ignoring_conflicts(
            OutboxMessage.__table__, self.db.dialect, "delivery_id"
        )
        try:
            async with self.db.session() as session:
                await session.execute(statement, rows)
                stored = await session.execute(
                    select(OutboxMessage.delivery_id, OutboxMessage.id).where(
                        OutboxMessage.delivery_id.in_([m.delivery_id for m in messages])
                    )
                )
                ids = {row[0]: row[1] for row in stored}
        except SQLAlchemyError as exc:
            error = RetryableSendError(f"outbox write failed: {type(exc).__name__}")
            return [error for _ in messages]
        return [Receipt(self.provider, ids.get(m.delivery_id, "")) for m in messages]

    def _sender(self, message: Message) -> str:
        """The From the real provider would use."""
        if message.channel == "email":
            return email_sender(message, self.email_from)
        return message.from_number or self.sms_from
