"""Taking back what dead or stalled workers held: deliveries whose lease expired."""

from __future__ import annotations

import logging
from datetime import datetime

from calnotify.db.engine import Database
from calnotify.deliveries import lifecycle
from calnotify.dispatch.metrics import DispatchMetrics
from calnotify.dispatch.settings import DispatchSettings

log = logging.getLogger("calnotify.dispatch")


class Lifeline:
    """Rescues expired leases at most every quarter of a lease (:func:`lifecycle.rescue`:
    an attempt in progress is recorded ``unknown``; past the maximum attempts or the
    deadline the delivery fails ``abandoned``, else it is queued again)."""

    def __init__(self, db: Database, settings: DispatchSettings, metrics: DispatchMetrics) -> None:
        self.db = db
        self.settings = settings
        self.metrics = metrics
        self._last: datetime | None = None

    async def rescue(self, now: datetime) -> None:
        if self._last is not None and now - self._last < self.settings.lease / 4:
            return
        self._last = now
        rescued = await lifecycle.rescue(self.db, now, self.settings.max_attempts)
        if rescued.requeued or rescued.abandoned:
            self.metrics.rescued += rescued.requeued + rescued.abandoned
            log.warning(
                "dispatch: took back %d deliveries from expired leases (%d queued again, "
                "%d failed: attempts used up or past their deadline)",
                rescued.requeued + rescued.abandoned,
                rescued.requeued,
                rescued.abandoned,
            )
