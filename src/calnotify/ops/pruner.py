"""The background pruner: retention (:mod:`calnotify.ops.retention`) applied every
``CALNOTIFY_PRUNE_INTERVAL_SECONDS`` by each ``serve`` and ``worker``, never in a request.

On PostgreSQL only one process of a deployment prunes at a time: each page takes a
transaction-scoped advisory lock first, and a process that cannot have it leaves the pass to
the one that has (Oban's Pruner runs on the leader only, the same way). On SQLite the space
freed is given back to the file system after a pass (incremental auto-vacuum, set on new
databases by ``calnotify db upgrade``; ``calnotify db vacuum`` turns it on for older ones),
and the WAL is truncated when no reader still needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from datetime import timedelta

from sqlalchemy import func, select

from calnotify.clock import Clock
from calnotify.config import Settings
from calnotify.db.engine import DATABASE_ERRORS, Database
from calnotify.db.gate import Overloaded
from calnotify.db.pages import BACKGROUND_REST
from calnotify.db.statements import Statement
from calnotify.db.tx import Tx
from calnotify.ops.retention import Retention, prune

log = logging.getLogger("calnotify.retention")

#: The advisory lock of the deployment's pruner (any number, the same in every process).
LOCK_KEY = 0x63616C6E  # "caln"
_TRY_LOCK = Statement(select(func.pg_try_advisory_xact_lock(LOCK_KEY)))
#: Pages given back to the file system per step of SQLite's incremental vacuum (1 MB),
#: each step its own short write, followed by a rest as long as it took.
VACUUM_PAGES = 256
VACUUM_STEPS = 100_000
#: What postpones a background pass to the next interval.
_POSTPONED: tuple[type[BaseException], ...] = (Overloaded, *DATABASE_ERRORS)


async def _leader(tx: Tx) -> bool:
    [[row]] = await tx.fetch((_TRY_LOCK, {}))
    return bool(row[0])


async def prune_now(
    db: Database, retention: Retention, clock: Clock, busy_timeout: float
) -> dict[str, int]:
    """One pass of retention, then (on SQLite) the freed space given back; what it removed.
    ``busy_timeout``: seconds SQLite's vacuum waits for the write lock."""
    if not db.is_sqlite:
        return await prune(db, retention, clock.now(), leader=_leader)
    path = db.url.database or ""

    async def checkpoint() -> None:
        # A page rewrites pages all over a big file: without a checkpoint after each, the
        # WAL would grow by tens of megabytes a page until the writer's next one.
        await asyncio.to_thread(checkpoint_wal, path)

    removed = await prune(db, retention, clock.now(), between=checkpoint)
    if any(removed.values()):
        await asyncio.to_thread(reclaim_space, path, busy_timeout)
    return removed


def checkpoint_wal(path: str, mode: str = "PASSIVE") -> None:
    """Copy what the WAL holds into the database file (``mode``: PASSIVE waits for no one;
    TRUNCATE also empties the file when no reader needs it), if it can within 0.1 s."""
    if not path or path == ":memory:":
        return
    connection = sqlite3.connect(path, timeout=0.1, isolation_level=None)
    try:
        connection.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
    except sqlite3.OperationalError:
        pass  # busy: the next one will
    finally:
        connection.close()


def reclaim_space(path: str, busy_timeout: float) -> int:
    """Give the SQLite file's free pages back to the file system, a few at a time (each
    step a write of its own, milliseconds long), then truncate the WAL if no reader still
    needs it; the pages given back. Without incremental auto-vacuum, nothing is."""
    if not path or path == ":memory:":
        return 0
    connection = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    given = 0
    try:
        incremental = connection.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
        for _ in range(VACUUM_STEPS if incremental else 0):
            free = connection.execute("PRAGMA freelist_count").fetchone()[0]
            if not free:
                break
            started = time.monotonic()
            # executescript steps the pragma to its end (execute frees a single page).
            connection.executescript(f"PRAGMA incremental_vacuum({VACUUM_PAGES})")
            given += min(free, VACUUM_PAGES)
            # Other processes' writers look for the lock every few milliseconds: let them in.
            time.sleep(max(BACKGROUND_REST, time.monotonic() - started))
    finally:
        connection.close()
    checkpoint_wal(path, "TRUNCATE")
    return given


def vacuum_sqlite(path: str, busy_timeout: float) -> tuple[int, int]:
    """Turn on incremental auto-vacuum and rebuild the file (``calnotify db vacuum``);
    its size in bytes before and after."""
    before = os.path.getsize(path)
    connection = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    try:
        connection.execute("PRAGMA auto_vacuum=INCREMENTAL")
        connection.execute("VACUUM")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        connection.close()
    return before, os.path.getsize(path)


class Pruner:
    """Runs :func:`prune_now` every ``interval`` until stopped; a database error or a busy
    service only postpones the pass."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        retention: Retention,
        interval: timedelta,
        busy_timeout: float,
    ) -> None:
        self.db = db
        self.clock = clock
        self.retention = retention
        self.interval = interval
        self.busy_timeout = busy_timeout
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, settings: Settings, db: Database, clock: Clock) -> Pruner:
        """The pruner a ``serve`` or ``worker`` runs, as ``settings`` say."""
        return cls(
            db,
            clock,
            Retention.of(settings),
            timedelta(seconds=settings.prune_interval_seconds),
            settings.sqlite_busy_timeout_ms / 1000,
        )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="retention-pruner")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval.total_seconds())
            try:
                removed = await prune_now(self.db, self.retention, self.clock, self.busy_timeout)
            except _POSTPONED as exc:
                log.warning("retention: pass postponed (%s)", type(exc).__name__)
                continue
            if any(removed.values()):
                log.info(
                    "retention: removed %s",
                    ", ".join(f"{n} {name}" for name, n in removed.items() if n),
                )
