"""The dispatcher's hand-overs and records, group-committed.

Every batch of a process asks here to count its attempts before sending
(:meth:`Writes.hand_over`) and to record its outcomes (:meth:`Writes.record`). What is asked
while a transaction is running goes into the next one, together: one transaction for
whatever several batches asked in the meantime, never one per message, and no waiting when
the database is idle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from calnotify.clock import Clock
from calnotify.db.engine import Database
from calnotify.deliveries import lifecycle
from calnotify.deliveries.lifecycle import HandOver, Outcome


@dataclass(eq=False)
class _Ask:
    hand_over: HandOver | None = None
    outcomes: Sequence[Outcome] = ()
    future: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Writes:
    def __init__(self, db: Database, clock: Clock, *, lease: timedelta, max_attempts: int) -> None:
        self.db = db
        self.clock = clock
        self.lease = lease
        self.max_attempts = max_attempts
        self._asked: list[_Ask] = []
        self._flushing: asyncio.Task[None] | None = None

    async def hand_over(self, ids: Sequence[str], token: str) -> set[str]:
        """Count an attempt for each of ``ids`` (of the claim ``token``); the ids that may go
        (:func:`calnotify.deliveries.lifecycle.hand_over`)."""
        allowed: set[str] = await self._ask(_Ask(hand_over=HandOver(ids, token)))
        return allowed

    async def record(self, outcomes: Sequence[Outcome]) -> int:
        """Write the outcomes (:func:`calnotify.deliveries.lifecycle.record`); how many."""
        if not outcomes:
            return 0
        recorded: set[str] = await self._ask(_Ask(outcomes=outcomes))
        return len(recorded)

    async def _ask(self, ask: _Ask) -> Any:
        self._asked.append(ask)
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush(), name="dispatch-writes")
        return await asyncio.shield(ask.future)

    async def _flush(self) -> None:
        while self._asked:
            asked, self._asked = self._asked, []
            now = self.clock.now()
            groups = [a.hand_over for a in asked if a.hand_over is not None]
            outcomes = [o for a in asked for o in a.outcomes]
            try:
                allowed, recorded = await lifecycle.hand_over_and_record(
                    self.db, groups, outcomes, now, now + self.lease, self.max_attempts
                )
            except asyncio.CancelledError:
                for ask in asked:
                    ask.future.cancel()
                raise
            except BaseException as exc:
                for ask in asked:
                    if not ask.future.done():
                        ask.future.set_exception(exc)
                continue
            for ask in asked:
                if ask.future.done():
                    continue
                if ask.hand_over is not None:
                    ask.future.set_result(allowed & set(ask.hand_over.ids))
                else:
                    ask.future.set_result(recorded & {o.delivery.id for o in ask.outcomes})
