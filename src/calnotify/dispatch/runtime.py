"""Running the dispatcher in a process: in ``calnotify serve`` or ``calnotify worker``.

On PostgreSQL the process also LISTENs for the planner's NOTIFY, so work planned by any
API process is picked up at once; on SQLite, in-process commits wake the dispatcher
directly and other processes are found by polling (``CALNOTIFY_DISPATCH_POLL_INTERVAL``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from datetime import timedelta

import psycopg

from calnotify.actions.keys import LinkKeys
from calnotify.channels.base import ChannelAdapter
from calnotify.channels.inapp import InboxListener
from calnotify.channels.registry import build_channels, close_channels
from calnotify.clock import Clock
from calnotify.compose.pool import ComposePool
from calnotify.config import Settings
from calnotify.db.engine import Database
from calnotify.dispatch.dispatcher import Dispatcher, DispatchSettings
from calnotify.dispatch.metrics import DispatchMetrics
from calnotify.dispatch.wakeup import Wakeup
from calnotify.planning.planner import WAKE_CHANNEL

log = logging.getLogger("calnotify.dispatch")
SWITCH_INTERVAL = 0.001  # seconds (Python's default: 0.005)


def dispatch_settings(settings: Settings, concurrency: int | None = None) -> DispatchSettings:
    return DispatchSettings(
        batch_size=settings.dispatch_batch_size,
        concurrency=concurrency or settings.dispatch_concurrency,
        lease=timedelta(seconds=settings.dispatch_lease_seconds),
        poll_interval=settings.dispatch_poll_interval,
        max_attempts=settings.dispatch_max_attempts,
        backoff_base=settings.dispatch_retry_base_seconds,
        email_from=settings.email_from,
        twilio_from_number=settings.twilio_from_number,
        twilio_whatsapp_from=settings.twilio_whatsapp_from,
        public_url=settings.links_url,
        link_secret_grace=timedelta(days=settings.link_secret_grace_days),
        in_flight=settings.dispatch_in_flight,
        render_budget_seconds=settings.render_budget_seconds,
        render_processes=settings.render_processes or None,
        planning_horizon=timedelta(days=settings.planning_horizon_days),
    )


class Engine:
    """A dispatcher with its channels, wake-ups and clean shutdown."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        clock: Clock,
        *,
        concurrency: int | None = None,
        channels: dict[str, ChannelAdapter] | None = None,
        metrics: DispatchMetrics | None = None,
        inbox_listener: InboxListener | None = None,
        pool: ComposePool | None = None,
        wakeup: Wakeup | None = None,
        links: LinkKeys | None = None,
    ) -> None:
        self.db = db
        self.channels = channels or build_channels(settings, db, clock, inbox_listener)
        self.dispatcher = Dispatcher(
            db,
            clock,
            self.channels,
            dispatch_settings(settings, concurrency),
            metrics,
            pool,
            wakeup,
            links,
        )
        self._listener: asyncio.Task[None] | None = None

    def start(self) -> None:
        # The SQLite writer's thread needs the interpreter lock for a moment after each
        # statement; handing the lock over every millisecond instead of every five keeps a
        # write from queueing behind the event loop's work for long.
        sys.setswitchinterval(SWITCH_INTERVAL)
        self.dispatcher.start()
        if not self.db.is_sqlite:
            self._listener = asyncio.create_task(self._listen(), name="dispatch-listen")

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self.dispatcher.stop()
        await close_channels(self.channels)

    async def _listen(self) -> None:
        conninfo = self.db.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {WAKE_CHANNEL}")
                    self.dispatcher.wake()  # anything planned while we were not listening
                    async for _ in conn.notifies():
                        self.dispatcher.wake()
            except psycopg.Error as exc:
                log.warning("dispatch: LISTEN connection lost (%s); reconnecting", exc)
                await asyncio.sleep(1.0)
