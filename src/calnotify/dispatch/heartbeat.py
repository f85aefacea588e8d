"""Keeping a claim's lease alive while its batch is worked on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from calnotify.clock import Clock
from calnotify.db.engine import DATABASE_ERRORS, Database
from calnotify.deliveries import lifecycle

log = logging.getLogger("calnotify.dispatch")


class Heartbeat:
    """Renews a claim's lease every third of the lease, whatever the batch is waiting for (a
    slow provider, a long render).

    ``held`` is what the claim still owns and has not recorded; ``lost`` turns true when
    the lease could not be renewed before it ran out, and the batch then stops handing
    messages over (another worker may have taken them back).
    """

    def __init__(self, db: Database, clock: Clock, lease: timedelta, batch: Sequence[Any]) -> None:
        self.db = db
        self.clock = clock
        self.lease = lease
        self.token = batch[0].claim_token or ""
        self.held = {d.id for d in batch}
        # Rows whose outcome is being written: still renewed until written, but their
        # absence from a renewal is no loss (the write may have committed first).
        self.settling: set[str] = set()
        self.lost = False
        self.expires = min((d.lease_until for d in batch if d.lease_until), default=None)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Heartbeat:
        self._task = asyncio.create_task(self._beat(), name="dispatch-heartbeat")
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def recording(self, ids: Iterable[str]) -> None:
        """The outcomes of these rows are about to be written."""
        self.settling.update(ids)

    def release(self, ids: Iterable[str]) -> None:
        """These rows are recorded: no longer this claim's to keep."""
        ids = set(ids)
        self.held.difference_update(ids)
        self.settling.difference_update(ids)

    async def _beat(self) -> None:
        interval = max(0.05, self.lease.total_seconds() / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.renew()
            except Exception:  # the heartbeat must keep beating
                log.exception("dispatch: lease renewal failed")

    async def renew(self) -> None:
        if not self.held:
            return
        until = self.clock.now() + self.lease
        asked = set(self.held)
        try:
            kept = await lifecycle.renew(self.db, sorted(asked), self.token, until)
        except DATABASE_ERRORS as exc:
            log.warning("dispatch: cannot renew the lease (%s)", type(exc).__name__)
            if self.expires is not None and self.clock.now() >= self.expires - self.lease / 3:
                self.lost = True
            return
        gone = (asked & self.held) - kept - self.settling
        if gone:
            log.warning("dispatch: %d deliveries of this claim were taken back", len(gone))
            self.held -= gone
            self.lost = True
        self.expires = until
