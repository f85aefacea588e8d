"""The delivery health a location's console shows and the deployment's per location
(docs/semantics.md §9), and confirmation rates: counted by the database, with no API
counterpart."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.auth.tokens import Principal
from calnotify.db.base import UTCDateTime
from calnotify.models import Appointment, AppointmentEvent, Calendar, Delivery, Location


@dataclass(frozen=True, slots=True)
class Health:
    queued: int
    due: int
    sending: int
    oldest_due: datetime | None
    minutes: list[datetime]
    per_channel: dict[str, list[int]]
    failed_last_hour: int
    lateness_buckets: list[str]
    lateness_counts: list[int]


LATENESS_EDGES = (0.5, 1, 2, 5, 10, 30, 60, 300)


def seconds_between(later: Any, earlier: Any, dialect: str) -> Any:
    """``later - earlier`` in seconds, computed by the database."""
    if dialect == "sqlite":
        return (func.julianday(later) - func.julianday(earlier)) * 86400.0
    return func.extract("epoch", later - earlier)


async def health(session: AsyncSession, principal: Principal, now: datetime) -> Health:
    """The location's queue now and its sending over the last hour, counted by the database."""
    dialect = session.get_bind().dialect.name
    mine = Delivery.location_id == principal.location_id
    is_due = and_(Delivery.status == "scheduled", Delivery.run_at <= now)
    queue = (
        await session.execute(
            select(
                func.sum(case((Delivery.status == "scheduled", 1), else_=0)),
                func.sum(case((is_due, 1), else_=0)),
                func.sum(case((Delivery.status == "sending", 1), else_=0)),
                func.min(case((is_due, Delivery.run_at), else_=None)),
            ).where(mine, Delivery.status.in_(("scheduled", "sending")))
        )
    ).one()
    oldest = queue[3]
    if isinstance(oldest, str):  # SQLite gives an aggregate of a date column back as text
        oldest = datetime.fromisoformat(oldest).replace(tzinfo=UTC)
    # Sixty whole minutes, the one under way last.
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=59)
    minutes = [start + timedelta(minutes=i) for i in range(60)]
    recent = [mine, Delivery.sent_at >= start, Delivery.sent_at <= now]
    anchor = literal(start, UTCDateTime())
    minute = func.floor(seconds_between(Delivery.sent_at, anchor, dialect) / 60)
    per_channel: dict[str, list[int]] = {}
    by_minute = await session.execute(
        select(Delivery.channel, minute, func.count())
        .where(*recent, Delivery.status == "sent")
        .group_by(Delivery.channel, minute)
    )
    for channel, slot, count in by_minute:
        index = min(max(int(slot), 0), 59)
        per_channel.setdefault(channel, [0] * 60)[index] += int(count)
    # A failure the dispatcher records has no ``sent_at`` (nothing was sent): it is counted
    # by when it was recorded.
    failed = await session.scalar(
        select(func.count()).where(
            mine,
            Delivery.status == "failed",
            Delivery.updated_at >= now - timedelta(hours=1),
            Delivery.updated_at <= now,
        )
    )
    late = seconds_between(Delivery.sent_at, Delivery.due_at, dialect)
    bucket = case(
        *((late < edge, i) for i, edge in enumerate(LATENESS_EDGES)),
        else_=len(LATENESS_EDGES),
    )
    lateness = [0] * (len(LATENESS_EDGES) + 1)
    for index, count in await session.execute(
        select(bucket, func.count()).where(*recent, Delivery.status == "sent").group_by(bucket)
    ):
        lateness[int(index)] += int(count)
    labels = [f"< {e:g} s" for e in LATENESS_EDGES] + [f"≥ {LATENESS_EDGES[-1]:g} s"]
    return Health(
        queued=int(queue[0] or 0),
        due=int(queue[1] or 0),
        sending=int(queue[2] or 0),
        oldest_due=oldest,
        minutes=minutes,
        per_channel=per_channel,
        failed_last_hour=int(failed or 0),
        lateness_buckets=labels,
        lateness_counts=lateness,
    )


# The confirmation rate looks at the appointments reminded in this many days.
CONFIRMATION_DAYS = 30


@dataclass(frozen=True, slots=True)
class ConfirmationRate:
    calendar_id: str
    calendar_name: str
    reminded: int  # appointments a reminder was sent for
    confirmed: int  # of those, confirmed before they started


async def confirmation_rates(
    session: AsyncSession, principal: Principal, now: datetime
) -> list[ConfirmationRate]:
    """Per calendar, of the appointments a reminder was sent for in the last
    :data:`CONFIRMATION_DAYS` days, how many were confirmed before they started (by the API,
    a reply or a link: an event that made them ``confirmed``)."""
    confirmed_before = (
        select(AppointmentEvent.id)
        .where(
            AppointmentEvent.appointment_id == Delivery.appointment_id,
            AppointmentEvent.kind.in_(("created", "status_changed")),
            AppointmentEvent.after["appointmentStatus"].as_string() == "confirmed",
            AppointmentEvent.occurred_at < Appointment.start_at,
        )
        .exists()
    )
    rows = await session.execute(
        select(
            Calendar.id,
            Calendar.name,
            func.count(func.distinct(Delivery.appointment_id)),
            func.count(func.distinct(case((confirmed_before, Delivery.appointment_id)))),
        )
        .join(Appointment, Appointment.id == Delivery.appointment_id)
        .join(Calendar, Calendar.id == Delivery.calendar_id)
        .where(
            Delivery.location_id == principal.location_id,
            Delivery.notification_type == "reminder",
            Delivery.status == "sent",
            Delivery.sent_at >= now - timedelta(days=CONFIRMATION_DAYS),
        )
        .group_by(Calendar.id, Calendar.name)
        .order_by(Calendar.name)
    )
    return [ConfirmationRate(i, name, int(n), int(c)) for i, name, n, c in rows]


@dataclass(frozen=True, slots=True)
class LocationHealth:
    id: str
    name: str
    queued: int
    due: int
    oldest_due: datetime | None
    late_p99: str  # "< 1 s" (a bucket of the last hour's lateness), "" without sends
    failed: int

    def rank(self, now: datetime) -> tuple[float, int, int, int]:
        """Worst first: the most overdue, then the most failures, the most due, queued."""
        overdue = (now - self.oldest_due).total_seconds() if self.oldest_due else 0.0
        return (-overdue, -self.failed, -self.due, -self.queued)


async def deployment_health(session: AsyncSession, now: datetime) -> list[LocationHealth]:
    """Every location's queue now and its last hour (counted by the database), worst first."""
    dialect = session.get_bind().dialect.name
    is_due = and_(Delivery.status == "scheduled", Delivery.run_at <= now)
    queues = {
        row[0]: row[1:]
        for row in await session.execute(
            select(
                Delivery.location_id,
                func.count(),
                func.sum(case((is_due, 1), else_=0)),
                func.min(case((is_due, Delivery.run_at), else_=None)),
            )
            .where(Delivery.status == "scheduled")
            .group_by(Delivery.location_id)
        )
    }
    hour_ago = now - timedelta(hours=1)
    failed = dict(
        (
            await session.execute(
                select(Delivery.location_id, func.count())
                .where(Delivery.status == "failed", Delivery.updated_at >= hour_ago)
                .group_by(Delivery.location_id)
            )
        ).all()
    )
    late = seconds_between(Delivery.sent_at, Delivery.due_at, dialect)
    bucket = case(
        *((late < edge, i) for i, edge in enumerate(LATENESS_EDGES)), else_=len(LATENESS_EDGES)
    )
    buckets: dict[str, list[int]] = {}
    for location_id, index, count in await session.execute(
        select(Delivery.location_id, bucket, func.count())
        .where(Delivery.status == "sent", Delivery.sent_at >= hour_ago)
        .group_by(Delivery.location_id, bucket)
    ):
        buckets.setdefault(location_id, [0] * (len(LATENESS_EDGES) + 1))[int(index)] += int(count)
    found = []
    for location in await session.execute(select(Location.id, Location.name)):
        queued, due, oldest = queues.get(location.id, (0, 0, None))
        found.append(
            LocationHealth(
                id=location.id,
                name=location.name,
                queued=int(queued or 0),
                due=int(due or 0),
                oldest_due=_instant(oldest),
                late_p99=_p99(buckets.get(location.id)),
                failed=int(failed.get(location.id, 0)),
            )
        )
    return sorted(found, key=lambda h: (*h.rank(now), h.name))


def _instant(value: Any) -> datetime | None:
    if isinstance(value, str):  # SQLite gives an aggregate of a date column back as text
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value  # type: ignore[no-any-return]


def _p99(counts: list[int] | None) -> str:
    """The lateness bucket the 99th percentile of the last hour's sends falls in."""
    if not counts or not sum(counts):
        return ""
    wanted, seen = 0.99 * sum(counts), 0
    for i, count in enumerate(counts):
        seen += count
        if seen >= wanted:
            return (
                f"< {LATENESS_EDGES[i]:g} s"
                if i < len(LATENESS_EDGES)
                else (f"≥ {LATENESS_EDGES[-1]:g} s")
            )
    return ""
