"""Operations endpoints: ``/healthz`` and ``/metrics`` (Prometheus text format)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from sqlalchemy import func, select, text

from calnotify.deps import ClockDep, SessionDep
from calnotify.dispatch.metrics import DispatchMetrics
from calnotify.models import Delivery
from calnotify.models.delivery import DeliveryStatus

router = APIRouter(tags=["Operations"])


@router.get("/healthz", operation_id="healthz")
async def healthz(session: SessionDep) -> dict[str, str]:
    """``{"status": "ok"}`` when the service and its database answer."""
    await session.execute(text("SELECT 1"))
    return {"status": "ok"}


@router.get("/metrics", response_class=PlainTextResponse, operation_id="metrics")
async def metrics(request: Request, session: SessionDep, clock: ClockDep) -> str:
    """Prometheus metrics: the queue from the database, sends of this process."""
    now = clock.now()
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP calnotify_{name} {help_text}")
        lines.append(f"# TYPE calnotify_{name} {kind}")

    metric("deliveries", "gauge", "Deliveries in the database by status and channel.")
    counts = await session.execute(
        select(Delivery.status, Delivery.channel, func.count()).group_by(
            Delivery.status, Delivery.channel
        )
    )
    for status, channel, count in counts:
        lines.append(f'calnotify_deliveries{{status="{status}",channel="{channel}"}} {count}')

    due = select(Delivery.run_at).where(
        Delivery.status == DeliveryStatus.SCHEDULED, Delivery.run_at <= now
    )
    depth = await session.scalar(select(func.count()).select_from(due.subquery()))
    oldest = await session.scalar(
        select(func.min(Delivery.run_at)).where(
            Delivery.status == DeliveryStatus.SCHEDULED, Delivery.run_at <= now
        )
    )
    metric("queue_depth", "gauge", "Scheduled deliveries that are due now.")
    lines.append(f"calnotify_queue_depth {int(depth or 0)}")
    metric("oldest_due_age_seconds", "gauge", "How long the oldest due delivery has waited.")
    age = (now - oldest).total_seconds() if oldest else 0.0
    lines.append(f"calnotify_oldest_due_age_seconds {max(0.0, age):.3f}")

    own: DispatchMetrics = request.app.state.metrics
    metric("sends_total", "counter", "Outcomes recorded by this process's dispatcher.")
    for (channel, status), count in sorted(own.outcomes.items()):
        lines.append(f'calnotify_sends_total{{channel="{channel}",status="{status}"}} {count}')
    metric("send_lateness_seconds", "histogram", "sent_at - due_at of messages sent here.")
    cumulative = 0
    for bound, count in zip(own.lateness.buckets, own.lateness.counts, strict=False):
        cumulative += count
        lines.append(f'calnotify_send_lateness_seconds_bucket{{le="{bound}"}} {cumulative}')
    lines.append(f'calnotify_send_lateness_seconds_bucket{{le="+Inf"}} {own.lateness.n}')
    lines.append(f"calnotify_send_lateness_seconds_sum {own.lateness.total:.6f}")
    lines.append(f"calnotify_send_lateness_seconds_count {own.lateness.n}")
    metric("claims_total", "counter", "Claim attempts by this process.")
    lines.append(f"calnotify_claims_total {own.claims}")
    metric("rescued_total", "counter", "Deliveries this process took back from expired leases.")
    lines.append(f"calnotify_rescued_total {own.rescued}")
    return "\n".join(lines) + "\n"
