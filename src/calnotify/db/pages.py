"""Work on many rows done a page at a time, each page its own short transaction
(architecture principle 10): erasure (:mod:`calnotify.contacts.erasure`) and retention
(:mod:`calnotify.ops.retention`) page through rows this way."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from calnotify.db.engine import Database
from calnotify.db.gate import Priority
from calnotify.db.tx import Tx

#: Rows a page works on, at most: a page's transaction holds the write lock for milliseconds.
PAGE = 500
#: Background work rests at least this long between pages (seconds).
BACKGROUND_REST = 0.01


async def in_pages(
    db: Database,
    page: Callable[[Tx], Awaitable[int]],
    size: int = PAGE,
    priority: Priority = Priority.REQUEST,
    *,
    background: bool = False,
    between: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """Run ``page`` (which works on at most ``size`` rows and says how many) in a
    transaction of its own, again and again until it works on fewer than ``size``; the rows
    worked on in all.

    ``background``: after each page, wait as long as it took (at least
    :data:`BACKGROUND_REST` s), so that the work holds the write lock at most half the time:
    SQLite's lock is not a queue, and the writers of other processes, which look for it
    again only every few milliseconds, would otherwise never find it free. ``between``
    runs during each rest (outside any transaction)."""
    total = 0
    while True:
        started = time.monotonic()
        async with db.transaction(priority) as tx:
            done = await page(tx)
        total += done
        if done < size:
            return total
        if background:
            took = time.monotonic() - started
            rest_until = time.monotonic() + max(BACKGROUND_REST, took)
            if between is not None:
                await between()
            await asyncio.sleep(max(0.0, rest_until - time.monotonic()))
