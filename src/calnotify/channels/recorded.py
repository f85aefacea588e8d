"""Adapters whose "sending" is a row in calnotify's own database (outbox, in-app inbox)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from calnotify.channels.base import ChannelAdapter, Message, Receipt, RetryableSendError, SendError
from calnotify.clock import Clock
from calnotify.db.dialect import insert_ignoring_conflicts
from calnotify.db.engine import Database


class RecordingAdapter(ChannelAdapter):
    """Writes one row per message in one transaction; a delivery is recorded once, however
    often it is handed over (the table is unique on ``delivery_id``)."""

    model: Any  # the ORM class of the rows

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def row(self, message: Message) -> dict[str, Any]:
        raise NotImplementedError

    def recorded(self, message: Message, row_id: str) -> None:
        """Called for each message once its row is committed."""

    async def send(self, message: Message) -> Receipt:
        [result] = await self.send_many([message])
        if isinstance(result, SendError):
            raise result
        return result

    async def send_many(self, messages: Sequence[Message]) -> list[Receipt | SendError]:
        if not messages:
            return []
        table = self.model.__table__
        statement = insert_ignoring_conflicts(table, self.db.dialect, "delivery_id")
        try:
            async with self.db.session() as session:
                await session.execute(statement, [self.row(m) for m in messages])
                stored = await session.execute(
                    select(self.model.delivery_id, self.model.id).where(
                        self.model.delivery_id.in_([m.delivery_id for m in messages])
                    )
                )
                ids = {row[0]: row[1] for row in stored}
        except SQLAlchemyError as exc:
            error = RetryableSendError(f"{self.provider} write failed: {type(exc).__name__}")
            return [error for _ in messages]
        for message in messages:
            self.recorded(message, ids.get(message.delivery_id, ""))
        return [Receipt(self.provider, ids.get(m.delivery_id, "")) for m in messages]
