"""Work on many rows done a page at a time, each page its own short transaction
(architecture principle 10): erasure (:mod:`calnotify.contacts.erasure`) and retention
(:mod:`calnotify.ops.retention`) page through rows this way."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from calnotify.db.engine import Database
from calnotify.db.gate import Priority
from calnotify.db.tx import Tx

#: Rows a page works on, at most: a page's transaction holds the write lock for milliseconds.
PAGE = 500


async def in_pages(
    db: Database,
    page: Callable[[Tx], Awaitable[int]],
    size: int = PAGE,
    priority: Priority = Priority.REQUEST,
) -> int:
    """Run ``page`` (which works on at most ``size`` rows and says how many) in a
    transaction of its own, again and again until it works on fewer than ``size``; the rows
    worked on in all."""
    total = 0
    while True:
        async with db.transaction(priority) as tx:
            done = await page(tx)
        total += done
        if done < size:
            return total
