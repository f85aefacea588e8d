"""Live inbox: wakes the streams of a user when an item lands in their inbox.

In-process only; streams also look at the database twice a second, so items written by a
worker in another process arrive within a second too.

The hub also counts the open streams of each token (``CALNOTIFY_SSE_STREAMS_PER_TOKEN`` at
most, per process): every stream holds a database poll and a connection of the server.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict


class InboxHub:
    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._streams: Counter[str] = Counter()  # token id -> open streams

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

    def open_stream(self, token_id: str, limit: int) -> bool:
        """Take one of the token's ``limit`` stream slots; False when all are taken."""
        if self._streams[token_id] >= limit:
            return False
        self._streams[token_id] += 1
        return True

    def close_stream(self, token_id: str) -> None:
        """Give back a slot taken with :meth:`open_stream`."""
        self._streams[token_id] -= 1
        if self._streams[token_id] <= 0:
            del self._streams[token_id]
