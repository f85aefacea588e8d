"""SQLite's one writer, shared by the writers of a process: sends first, and no queue that
grows without bound (architecture principle 16).

Every write transaction of a process on SQLite passes the :class:`WriteGate`. It is a lock
whose waiters are served by priority, then in arrival order: the dispatcher's claims,
hand-overs and records (:attr:`Priority.SEND`) go before requests (:attr:`Priority.REQUEST`),
so a burst of bookings delays no reminder by more than the transaction in progress.

When more writes are offered than the process can do, a request that would join a queue
that is already too long (a waiting request has waited ``shed_after`` seconds, or
``max_waiting`` requests wait) is refused at once with :class:`Overloaded`: the API answers
503 with ``Retry-After`` instead of making every request, and every reminder, wait.
The dispatcher is never refused.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from dataclasses import dataclass, field
from enum import IntEnum


class Priority(IntEnum):
    SEND = 0
    REQUEST = 1


class Overloaded(Exception):
    """The process is offered more writes than it can do; try again after ``retry_after``."""

    def __init__(self, retry_after: float = 1.0) -> None:
        super().__init__("the service is busy: try again shortly")
        self.retry_after = retry_after


@dataclass(order=True)
class _Waiter:
    priority: int
    order: int
    since: float = field(compare=False)
    future: asyncio.Future[None] = field(compare=False)


class WriteGate:
    """A lock served by priority that refuses requests when its queue is too long."""

    def __init__(self, *, shed_after: float = 0.25, max_waiting: int = 64) -> None:
        self.shed_after = shed_after
        self.max_waiting = max_waiting
        self._held = False
        self._waiters: list[_Waiter] = []
        self._order = itertools.count()
        self._requests: dict[int, float] = {}  # order → since, of waiting requests
        #: Requests refused since the gate was made (for /metrics).
        self.refused = 0

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def overloaded(self) -> bool:
        """Whether a request arriving now would be refused."""
        if not self._requests:
            return False
        if len(self._requests) >= self.max_waiting:
            return True
        oldest = min(self._requests.values())
        return time.monotonic() - oldest >= self.shed_after

    async def acquire(self, priority: Priority) -> None:
        """Wait for the writer; a request raises :class:`Overloaded` instead of queueing
        behind a queue that is too long already."""
        if priority == Priority.REQUEST and self.overloaded():
            self.refused += 1
            raise Overloaded()
        if not self._held and not self._waiters:
            self._held = True
            return
        loop = asyncio.get_running_loop()
        waiter = _Waiter(int(priority), next(self._order), time.monotonic(), loop.create_future())
        heapq.heappush(self._waiters, waiter)
        if priority == Priority.REQUEST:
            self._requests[waiter.order] = waiter.since
        try:
            await waiter.future
        except BaseException:
            if waiter.future.done() and not waiter.future.cancelled():
                self._hand_on()  # it was ours already: give it to the next one
            else:
                self._forget(waiter)
            raise
        finally:
            self._requests.pop(waiter.order, None)

    def release(self) -> None:
        if not self._held:
            raise RuntimeError("the write gate is not held")
        self._hand_on()

    def _hand_on(self) -> None:
        while self._waiters:
            waiter = heapq.heappop(self._waiters)
            if not waiter.future.done():
                waiter.future.set_result(None)  # still held: now by this waiter
                return
        self._held = False

    def _forget(self, waiter: _Waiter) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)
            heapq.heapify(self._waiters)

    async def __aenter__(self) -> None:  # a plain lock at request priority
        await self.acquire(Priority.REQUEST)

    async def __aexit__(self, *_exc: object) -> None:
        self.release()
