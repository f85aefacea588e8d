"""Group commit: the sending side's writes asked for at once go into one transaction.

The dispatcher counts attempts, records outcomes and (for the outbox and the in-app
inbox) writes messages, each a small write of a few rows, many times a second. Each is a
*work*: a function of a transaction. :meth:`GroupCommit.run` queues it; works asked while
a transaction is being written go together into the next one, at the writer's send
priority. So the process commits once for whatever its batches asked in the meantime,
never once per message, and a work asked when the writer is idle waits for no other.

If the transaction fails (the database is away or locked for long), every work of it
fails with that error, and nothing of any of them was written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from calnotify.db.gate import Priority
from calnotify.db.tx import Tx

T = TypeVar("T")
#: How long the first work waits for others to join it.
LINGER = 0.0
Work = Callable[[Tx], Awaitable[Any]]
#: Opens a write transaction at a priority (:meth:`calnotify.db.engine.Database.transaction`).
Opener = Callable[[Priority], AbstractAsyncContextManager[Tx]]


@dataclass(eq=False)
class _Asked:
    work: Work
    future: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class GroupCommit:
    def __init__(self, transaction: Opener) -> None:
        self.transaction = transaction
        self._asked: list[_Asked] = []
        self._writing: asyncio.Task[None] | None = None

    async def run(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        """``work(tx)`` in the next group transaction; its result once committed."""
        asked = _Asked(work)
        self._asked.append(asked)
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._write(), name="group-commit")
        # Shielded: a caller that stops waiting does not take the others' write with it.
        result: T = await asyncio.shield(asked.future)
        return result

    async def _write(self) -> None:
        # What else is asked in this turn of the event loop goes in the same transaction.
        await asyncio.sleep(LINGER)
        while self._asked:
            asked, self._asked = self._asked, []
            results: list[Any] = []
            try:
                async with self.transaction(Priority.SEND) as tx:
                    for each in asked:
                        results.append(await each.work(tx))
            except asyncio.CancelledError:
                for each in asked:
                    each.future.cancel()
                raise
            except BaseException as exc:
                for each in asked:
                    if not each.future.done():
                        each.future.set_exception(exc)
                continue
            for each, result in zip(asked, results, strict=True):
                if not each.future.done():
                    each.future.set_result(result)
