"""How a dispatcher runs: :class:`DispatchSettings`, made from the service's settings by
:func:`calnotify.dispatch.runtime.dispatch_settings`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from calnotify.actions.keys import DEFAULT_GRACE
from calnotify.appointments.series import DEFAULT_HORIZON


@dataclass(frozen=True)
class DispatchSettings:
    batch_size: int = 200
    # A claimed batch is worked on in chunks of this size: fenced and composed together.
    chunk_size: int = 100
    concurrency: int = 2
    lease: timedelta = timedelta(seconds=120)
    poll_interval: float = 0.5
    max_attempts: int = 8
    backoff_base: float = 15.0
    backoff_cap: float = 1800.0
    # Messages handed to providers and not yet recorded, at most, in this process: a worker
    # killed mid-send leaves at most this many to be sent again (docs/engine.md).
    in_flight: int = 32
    # The operator's senders (docs/semantics.md §7): CALNOTIFY_EMAIL_FROM and the Twilio numbers.
    email_from: str = "calnotify <notifications@calnotify.invalid>"
    twilio_from_number: str = ""
    twilio_whatsapp_from: str = ""
    # Action links (docs/semantics.md §8): where they point (CALNOTIFY_PUBLIC_URL, else
    # this machine: Settings.links_url), and how long a retired link secret still verifies.
    public_url: str = ""
    link_secret_grace: timedelta = DEFAULT_GRACE
    # Composing one message: its wall-clock budget, and the render processes (None: one
    # per CPU) when the dispatcher makes its own pool.
    render_budget_seconds: float = 2.0
    render_processes: int | None = None
    # Recurring series: deliveries exist as rows when due within this long.
    planning_horizon: timedelta = DEFAULT_HORIZON
    # How long stop() waits for the batches in flight before abandoning them to the lease.
    drain_seconds: float = 30.0
