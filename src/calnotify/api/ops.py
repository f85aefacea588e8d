"""Operations endpoints: ``/healthz`` and ``/metrics`` (Prometheus text format).

``/metrics`` answers as fast on a table of ten million deliveries as on an empty one. Its
database part counts only the deliveries still in the queue (``scheduled`` and
``sending``), each from the partial index that holds exactly the rows in that status
(``ix_deliveries_due``, ``ix_deliveries_leased``) without reading the table, and stops
counting at :data:`QUEUE_COUNT_LIMIT`: the work never grows with the history and has a
ceiling however long the queue. That reading is shared: at most one every
:data:`QUEUE_CACHE_SECONDS` per process, however many scrapers ask. What became of the
other deliveries (sent, failed, skipped) each process counts as it happens
(:class:`~calnotify.dispatch.metrics.DispatchMetrics`): sum those over processes.

With ``CALNOTIFY_METRICS_TOKEN`` set, ``/metrics`` needs ``Authorization: Bearer <that
token>`` (401 otherwise); unset, it is open (keep it off the public side of the proxy).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import PlainTextResponse
from sqlalchemy import Select, func, literal_column, select, text

from calnotify.config import Settings
from calnotify.db.base import UTCDateTime
from calnotify.db.engine import Database
from calnotify.deliveries.lifecycle import DeliveryStatus
from calnotify.deps import ClockDep, SessionDep, get_database
from calnotify.dispatch.metrics import DispatchMetrics

router = APIRouter(tags=["Operations"])

QUEUE_CACHE_SECONDS = 5.0
QUEUE_COUNT_LIMIT = 1_000_000

# The queue's statuses and the partial index that holds exactly their rows.
QUEUE_INDEXES = {
    DeliveryStatus.SCHEDULED: "ix_deliveries_due",
    DeliveryStatus.SENDING: "ix_deliveries_leased",
}


@router.get("/healthz", operation_id="healthz")
async def healthz(session: SessionDep) -> dict[str, str]:
    """``{"status": "ok"}`` when the service and its database answer."""
    await session.execute(text("SELECT 1"))
    return {"status": "ok"}


def metrics_access(request: Request) -> None:
    """With ``CALNOTIFY_METRICS_TOKEN`` set, the request must carry it as a Bearer token."""
    settings: Settings = request.app.state.settings
    expected = settings.metrics_token.get_secret_value()
    if not expected:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    # Digests of both sides: the comparison takes the same time whatever the lengths.
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        hashlib.sha256(given.strip().encode("utf-8", "surrogatepass")).digest(),
        hashlib.sha256(expected.encode("utf-8")).digest(),
    ):
        raise HTTPException(
            status_code=401,
            detail="Invalid metrics token: send Authorization: Bearer <CALNOTIFY_METRICS_TOKEN>",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )


# --- the queue, from the database -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    """The queue as one reading saw it."""

    at: datetime  # the service clock when it was read
    read_at: float  # time.monotonic() when it was read
    by_status: dict[str, int]  # scheduled / sending -> deliveries (at most the limit)
    due: int  # scheduled with run_at <= at (at most the limit)
    oldest_run_at: datetime | None  # the smallest run_at of a scheduled delivery

    def fresh(self, now: datetime) -> bool:
        return (
            time.monotonic() - self.read_at < QUEUE_CACHE_SECONDS
            and abs((now - self.at).total_seconds()) < QUEUE_CACHE_SECONDS
        )


def _queued(status: DeliveryStatus, *, sqlite: bool) -> Select[int]:
    """The rows in a queue status, read from their partial index (up to the limit).

    The condition is the index's own text (``status = 'scheduled'``): a planner uses a
    partial index only for a query that implies its condition, and a bound parameter
    would not. On SQLite ``INDEXED BY`` makes it certain (without statistics its planner
    may otherwise scan a whole other index); PostgreSQL picks the small partial index.
    """
    source = f"deliveries INDEXED BY {QUEUE_INDEXES[status]}" if sqlite else "deliveries"
    return (
        select(literal_column("1"))
        .select_from(text(source))
        .where(text(f"status = '{status.value}'"))
    )


_run_at = literal_column("run_at", UTCDateTime())


def count_in_status(status: DeliveryStatus, *, sqlite: bool) -> Select[int]:
    """How many deliveries are in ``status``, counted up to :data:`QUEUE_COUNT_LIMIT`."""
    rows = _queued(status, sqlite=sqlite).limit(QUEUE_COUNT_LIMIT).subquery("queued")
    return select(func.count()).select_from(rows)


def count_due(now: datetime, *, sqlite: bool) -> Select[int]:
    """How many scheduled deliveries are due at ``now``, up to :data:`QUEUE_COUNT_LIMIT`."""
    rows = _queued(DeliveryStatus.SCHEDULED, sqlite=sqlite).where(_run_at <= now)
    return select(func.count()).select_from(rows.limit(QUEUE_COUNT_LIMIT).subquery("due"))


def oldest_scheduled(*, sqlite: bool) -> Select[datetime]:
    """The smallest run_at of a scheduled delivery: the first entry of the index."""
    rows = _queued(DeliveryStatus.SCHEDULED, sqlite=sqlite)
    return rows.with_only_columns(func.min(_run_at))


async def read_queue(db: Database, now: datetime) -> QueueSnapshot:
    """Count the queue from its partial indexes, in one read-only unit of work."""
    sqlite = db.is_sqlite
    by_status: dict[str, int] = {}
    async with db.session(write=False) as reader:
        for status in QUEUE_INDEXES:
            count = await reader.scalar(count_in_status(status, sqlite=sqlite))
            by_status[status.value] = int(count or 0)
        due = int(await reader.scalar(count_due(now, sqlite=sqlite)) or 0)
        oldest = await reader.scalar(oldest_scheduled(sqlite=sqlite))
    return QueueSnapshot(
        at=now, read_at=time.monotonic(), by_status=by_status, due=due, oldest_run_at=oldest
    )


class QueueGauges:
    """The last :class:`QueueSnapshot`; scrapes that come while it is being read wait for
    that reading instead of starting their own."""

    def __init__(self) -> None:
        self._snapshot: QueueSnapshot | None = None
        self._reading = asyncio.Lock()

    async def get(self, db: Database, now: datetime) -> QueueSnapshot:
        snapshot = self._snapshot
        if snapshot is not None and snapshot.fresh(now):
            return snapshot
        async with self._reading:
            snapshot = self._snapshot
            if snapshot is None or not snapshot.fresh(now):
                snapshot = self._snapshot = await read_queue(db, now)
        return snapshot


def queue_gauges(request: Request) -> QueueGauges:
    gauges: QueueGauges | None = getattr(request.app.state, "queue_gauges", None)
    if gauges is None:
        gauges = request.app.state.queue_gauges = QueueGauges()
    return gauges


# --- the endpoint -------------------------------------------------------------------------

_FROM_DB = (
    f"From the database (the same in every process), read at most every "
    f"{QUEUE_CACHE_SECONDS:g} s and counted up to {QUEUE_COUNT_LIMIT} "
    f"(that value means at least as many)."
)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    operation_id="metrics",
    responses={401: {"description": "CALNOTIFY_METRICS_TOKEN is set and was not given."}},
)
async def metrics(
    _access: Annotated[None, Depends(metrics_access)],
    request: Request,
    clock: ClockDep,
) -> str:
    """Prometheus metrics: the queue from the database (read at most every 5 s), the
    sends of this process. Needs ``Authorization: Bearer <CALNOTIFY_METRICS_TOKEN>`` when
    that is set."""
    queue = await queue_gauges(request).get(get_database(request), clock.now())
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP calnotify_{name} {help_text}")
        lines.append(f"# TYPE calnotify_{name} {kind}")

    metric(
        "deliveries",
        "gauge",
        "Deliveries still in the queue, by status: scheduled (waiting for their time or for "
        "a retry), sending (claimed by a worker). Finished ones (sent, failed, skipped, "
        f"cancelled) are not counted: see calnotify_sends_total. {_FROM_DB}",
    )
    for queued in QUEUE_INDEXES:
        lines.append(f'calnotify_deliveries{{status="{queued}"}} {queue.by_status[queued]}')
    metric(
        "queue_depth",
        "gauge",
        f"Scheduled deliveries that are due (run_at has passed), not yet claimed. {_FROM_DB}",
    )
    lines.append(f"calnotify_queue_depth {queue.due}")
    metric(
        "oldest_due_age_seconds",
        "gauge",
        "How long the oldest due, unclaimed delivery has waited past its run_at (0: none "
        f"due). From the database, at most {QUEUE_CACHE_SECONDS:g} s old.",
    )
    oldest = queue.oldest_run_at
    age = (queue.at - oldest).total_seconds() if oldest is not None else 0.0
    lines.append(f"calnotify_oldest_due_age_seconds {max(0.0, age):.3f}")

    own: DispatchMetrics = request.app.state.metrics
    metric(
        "sends_total",
        "counter",
        "Outcomes this process's dispatcher recorded since it started, by channel and status "
        "(sent, failed, skipped; scheduled: a retry was scheduled). Sum over processes for "
        "the service's totals.",
    )
    for (channel, status), count in sorted(own.outcomes.items()):
        lines.append(f'calnotify_sends_total{{channel="{channel}",status="{status}"}} {count}')
    metric(
        "send_lateness_seconds",
        "histogram",
        "sent_at - due_at of the messages this process sent since it started.",
    )
    cumulative = 0
    for bound, count in zip(own.lateness.buckets, own.lateness.counts, strict=False):
        cumulative += count
        lines.append(f'calnotify_send_lateness_seconds_bucket{{le="{bound}"}} {cumulative}')
    lines.append(f'calnotify_send_lateness_seconds_bucket{{le="+Inf"}} {own.lateness.n}')
    lines.append(f"calnotify_send_lateness_seconds_sum {own.lateness.total:.6f}")
    lines.append(f"calnotify_send_lateness_seconds_count {own.lateness.n}")
    metric("claims_total", "counter", "Claim attempts by this process since it started.")
    lines.append(f"calnotify_claims_total {own.claims}")
    metric(
        "rescued_total",
        "counter",
        "Deliveries this process took back from expired leases since it started.",
    )
    lines.append(f"calnotify_rescued_total {own.rescued}")
    return "\n".join(lines) + "\n"
