"""Live inbox: wakes the streams of a user when an item lands in their inbox.

In-process only; streams also look at the database twice a second, so items written by a
worker in another process arrive within a second too.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict


class InboxHub:
    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)

    def publish(self, user_id: str, _item_id: str = "") -> None:
        for event in list(self._waiters.get(user_id, ())):
            event.set()

    def subscribe(self, user_id: str) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters[user_id].add(event)
        return event

    def unsubscribe(self, user_id: str, event: asyncio.Event) -> None:
        waiters = self._waiters.get(user_id)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiters[user_id]
