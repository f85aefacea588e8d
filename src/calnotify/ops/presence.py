"""Which ``calnotify serve`` and ``worker`` processes use the database: each keeps a row in
``processes`` while it runs (its heartbeat), so a command that must not run beside them
(``calnotify db restore``) can say plainly what is running, and where."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, insert, select

from calnotify.clock import Clock
from calnotify.db.engine import DATABASE_ERRORS, Database
from calnotify.db.gate import Priority
from calnotify.db.statements import Statement, table
from calnotify.db.tx import Reader, Tx
from calnotify.ids import new_id
from calnotify.models import ServiceProcess

log = logging.getLogger("calnotify")

#: How often a process renews its row, and after how long without a renewal it is taken
#: for gone (stopped by kill -9, or its machine lost).
HEARTBEAT_SECONDS = 10.0
STALE_AFTER = timedelta(seconds=3 * HEARTBEAT_SECONDS)

_T = table(ServiceProcess)
_ADD = Statement(insert(_T))
_GONE = Statement(delete(_T).where(_T.c.id == bindparam("b_id")))
_LIVE = Statement(
    select(_T.c.kind, _T.c.host, _T.c.pid, _T.c.seen_at)
    .where(_T.c.seen_at >= bindparam("since"))
    .order_by(_T.c.kind, _T.c.host, _T.c.pid)
)
_CLEAR = Statement(delete(_T))


class Presence:
    """This process's row in ``processes``: written by :meth:`start`, renewed every
    :data:`HEARTBEAT_SECONDS`, deleted by :meth:`stop`. A database that cannot be reached
    only delays the next renewal: the process keeps serving and sending."""

    def __init__(self, db: Database, clock: Clock, kind: str) -> None:
        self.db = db
        self.clock = clock
        self.kind = kind
        self.id = new_id()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        now = self.clock.now()
        row = {
            "id": self.id,
            "kind": self.kind,
            "host": socket.gethostname()[:255],
            "pid": os.getpid(),
            "started_at": now,
            "seen_at": now,
        }
        try:
            async with self.db.transaction(Priority.SEND) as tx:
                tx.write(_ADD, row)
        except DATABASE_ERRORS as exc:
            log.warning("cannot record this process in the database (%s)", type(exc).__name__)
        self._task = asyncio.create_task(self._beat(row), name="presence-heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(*DATABASE_ERRORS):
            async with self.db.transaction(Priority.SEND) as tx:
                tx.write(_GONE, {"b_id": self.id})

    async def _beat(self, row: dict[str, Any]) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                async with self.db.transaction(Priority.SEND) as tx:
                    # Renewed, or written again when it is gone (a restore, a first
                    # write that failed): a beat always leaves the row in place.
                    tx.write(_GONE, {"b_id": self.id})
                    tx.write(_ADD, {**row, "seen_at": self.clock.now()})
            except DATABASE_ERRORS as exc:
                log.warning("cannot renew this process's heartbeat (%s)", type(exc).__name__)


async def live_processes(reader: Reader, now: datetime) -> list[Any]:
    """The processes whose heartbeat is recent: ``kind``, ``host``, ``pid``, ``seen_at``."""
    [rows] = await reader.fetch((_LIVE, {"since": now - STALE_AFTER}))
    return rows


def describe(processes: list[Any], now: datetime) -> str:
    """``calnotify worker (pid 4711 on db-1, seen 3 s ago)``, for each process."""
    return "; ".join(
        f"calnotify {p.kind} (pid {p.pid} on {p.host}, seen "
        f"{max(0, round((now - p.seen_at).total_seconds()))} s ago)"
        for p in processes
    )


def clear_processes(tx: Tx) -> None:
    """Forget every process row (those of a restored database describe processes of the
    past)."""
    tx.write(_CLEAR, {})
