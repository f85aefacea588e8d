"""Wake-ups: work due to send was committed, so the dispatchers that wait for it look now.

A write that planned something due calls :meth:`Wakeup.due` after its commit; each waiting
loop of this process's dispatcher holds one of its :meth:`Wakeup.waiter` events. (Other
processes are told through PostgreSQL's NOTIFY, or find the work by polling on SQLite.)
"""

from __future__ import annotations

import asyncio


class Wakeup:
    def __init__(self) -> None:
        self._events: list[asyncio.Event] = []

    def waiter(self) -> asyncio.Event:
        """An event set by every :meth:`due` from now on."""
        event = asyncio.Event()
        self._events.append(event)
        return event

    def due(self) -> None:
        for event in self._events:
            event.set()
