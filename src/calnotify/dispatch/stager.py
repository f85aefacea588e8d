"""Planning that runs on a timer: planning jobs (a rule re-planned over a big calendar, a
deleted calendar's cancellations) and the recurring horizon, a short transaction a page."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from calnotify.appointments.series import advance_horizons
from calnotify.clock import Clock
from calnotify.db.engine import DATABASE_ERRORS, Database
from calnotify.dispatch.settings import DispatchSettings
from calnotify.dispatch.wakeup import Wakeup
from calnotify.planning import jobs

log = logging.getLogger("calnotify.dispatch")

# How often the series whose horizon is behind are looked for, and how many move per look.
HORIZON_EVERY = timedelta(minutes=1)
HORIZON_BATCH = 20


class Stager:
    def __init__(
        self, db: Database, clock: Clock, settings: DispatchSettings, wakeup: Wakeup
    ) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.wakeup = wakeup  # told when a page planned something due to send
        self.wake = wakeup.waiter()
        self._last_horizon: datetime | None = None

    async def plan_once(self, pages: int = 20) -> int:
        """Up to ``pages`` pages of planning work, and the recurring horizon moved on for
        series that are behind (looked for once a minute); the work done."""
        done, due = await jobs.run_jobs(self.db, self.clock, pages=pages)
        now = self.clock.now()
        if self._last_horizon is None or now - self._last_horizon >= HORIZON_EVERY:
            moved, more = await advance_horizons(
                self.db, self.clock, self.settings.planning_horizon, limit=HORIZON_BATCH
            )
            if moved < HORIZON_BATCH:
                self._last_horizon = now  # caught up: look again in a minute
            done += moved
            due |= more
        if due:
            self.wakeup.due()
        return done

    async def run(self, stopping: Callable[[], bool]) -> None:
        while not stopping():
            self.wake.clear()  # before looking: a wake-up while it looks is kept
            try:
                done = await self.plan_once()
            except DATABASE_ERRORS as exc:
                log.warning("planning: database error, retrying: %s", type(exc).__name__)
                done = 0
            except Exception:
                log.exception("planning: unexpected error; continuing")
                done = 0
            if done or stopping():
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=self.settings.poll_interval)
