"""Adapters whose "sending" is a row in calnotify's own database (outbox, in-app inbox)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, select

from calnotify.channels.base import ChannelAdapter, Message, Receipt, RetryableSendError, SendError
from calnotify.clock import Clock
from calnotify.db.dialect import insert_ignoring_conflicts
from calnotify.db.engine import DATABASE_ERRORS, Database
from calnotify.db.statements import Statement
from calnotify.db.tx import Tx


class RecordingAdapter(ChannelAdapter):
    """Writes one row per message in one transaction; a delivery is recorded once, however
    often it is handed over (the table is unique on ``delivery_id``)."""

    model: Any  # the ORM class of the rows

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        table = self.model.__table__
        self._insert = Statement(insert_ignoring_conflicts(table, db.dialect, "delivery_id"))
        self._stored = Statement(
            select(table.c.delivery_id, table.c.id).where(
                table.c.delivery_id.in_(bindparam("ids", expanding=True))
            )
        )

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
        rows = [self.row(m) for m in messages]
        wanted = {"ids": [m.delivery_id for m in messages]}

        async def work(tx: Tx) -> dict[str, str]:
            tx.write_many(self._insert, rows)
            [stored] = await tx.fetch((self._stored, wanted))
            return {row.delivery_id: row.id for row in stored}

        try:
            # Part of sending: group-committed with the dispatcher's other writes.
            ids = await self.db.sends.run(work)
        except DATABASE_ERRORS as exc:
            error = RetryableSendError(f"{self.provider} write failed: {type(exc).__name__}")
            return [error for _ in messages]
        for message in messages:
            self.recorded(message, ids.get(message.delivery_id, ""))
        return [Receipt(self.provider, ids.get(m.delivery_id, "")) for m in messages]
