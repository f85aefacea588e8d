"""The console's reads: each bounded by the token's location and by a page size."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.auth.scopes import Scope
from calnotify.auth.tokens import Principal
from calnotify.db.base import UTCDateTime
from calnotify.deliveries import lifecycle
from calnotify.ids import parse_instance_id
from calnotify.models import (
    Appointment,
    AppointmentEvent,
    Calendar,
    Contact,
    Delivery,
    DeliveryAttempt,
    InboundMessage,
    InboxItem,
    Notification,
    User,
)
from calnotify.replies.reading import list_replies

PAGE = 50
_ESCAPE = "\\"


@dataclass(frozen=True, slots=True)
class CalendarRow:
    calendar: Calendar
    rules: int
    active: int


async def calendars_with_counts(session: AsyncSession, principal: Principal) -> list[CalendarRow]:
    counts = (
        select(
            Notification.calendar_id,
            func.count().label("rules"),
            func.sum(case((Notification.is_active.is_(True), 1), else_=0)).label("active"),
        )
        .where(Notification.location_id == principal.location_id, Notification.deleted.is_(False))
        .group_by(Notification.calendar_id)
        .subquery()
    )
    rows = await session.execute(
        select(Calendar, counts.c.rules, counts.c.active)
        .outerjoin(counts, counts.c.calendar_id == Calendar.id)
        .where(Calendar.location_id == principal.location_id, Calendar.deleted.is_(False))
        .order_by(Calendar.name, Calendar.id)
        .limit(500)
    )
    return [CalendarRow(c, int(n or 0), int(a or 0)) for c, n, a in rows]


async def rules_of(session: AsyncSession, calendar_id: str) -> Sequence[Notification]:
    rows = await session.scalars(
        select(Notification)
        .where(Notification.calendar_id == calendar_id, Notification.deleted.is_(False))
        .order_by(Notification.date_added, Notification.batch_index, Notification.id)
        .limit(500)
    )
    return rows.all()


async def users_of(session: AsyncSession, principal: Principal) -> Sequence[User]:
    rows = await session.scalars(
        select(User)
        .where(User.location_id == principal.location_id, User.deleted.is_(False))
        .order_by(User.first_name, User.last_name, User.id)
        .limit(500)
    )
    return rows.all()


def _like(text: str) -> str:
    escaped = text.replace(_ESCAPE, _ESCAPE * 2).replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


async def search_appointments(
    session: AsyncSession,
    principal: Principal,
    *,
    text: str,
    start: datetime | None,
    end: datetime | None,
    page: int,
) -> tuple[list[tuple[Appointment, Contact, str]], int]:
    """Appointments (and series) of the location whose title or contact matches ``text``,
    by start; a token without ``contacts.readonly`` searches titles only (a search must
    not tell what it may not show)."""
    conditions: list[Any] = [
        Appointment.location_id == principal.location_id,
        Appointment.deleted.is_(False),
        Appointment.master_id.is_(None),  # a series is found by its master
    ]
    if text:
        pattern = _like(text)
        matches = [func.lower(Appointment.title).like(pattern, escape=_ESCAPE)]
        if principal.can(Scope.CONTACTS_READ):
            full_name = func.lower(Contact.first_name + " " + Contact.last_name)
            matches += [
                full_name.like(pattern, escape=_ESCAPE),
                func.lower(Contact.email).like(pattern, escape=_ESCAPE),
                func.lower(Contact.phone).like(pattern, escape=_ESCAPE),
            ]
        conditions.append(or_(*matches))
    if start is not None:
        conditions.append(Appointment.start_at >= start)
    if end is not None:
        conditions.append(Appointment.start_at < end)
    joined = (
        select(Appointment, Contact, Calendar.name)
        .join(Contact, Contact.id == Appointment.contact_id)
        .join(Calendar, Calendar.id == Appointment.calendar_id)
        .where(*conditions)
    )
    total = await session.scalar(
        select(func.count())
        .select_from(Appointment)
        .join(Contact, Contact.id == Appointment.contact_id)
        .where(*conditions)
    )
    rows = await session.execute(
        joined.order_by(Appointment.start_at, Appointment.id).limit(PAGE).offset((page - 1) * PAGE)
    )
    return [(a, c, n) for a, c, n in rows], int(total or 0)


async def timeline(
    session: AsyncSession, principal: Principal, appointment_id: str
) -> tuple[Sequence[Delivery], dict[str, list[DeliveryAttempt]]]:
    """Every delivery of an appointment (or of one occurrence), in due order, and attempts."""
    if parse_instance_id(appointment_id) is not None:
        where = Delivery.instance_id == appointment_id
    else:
        where = and_(Delivery.appointment_id == appointment_id, Delivery.instance_id == "")
    rows = (
        await session.scalars(
            select(Delivery)
            .where(Delivery.location_id == principal.location_id, where)
            .order_by(Delivery.due_at, Delivery.id)
            .limit(1000)
        )
    ).all()
    attempts: dict[str, list[DeliveryAttempt]] = {}
    ids = [d.id for d in rows if d.attempts]
    for start in range(0, len(ids), 500):
        for attempt in await session.scalars(lifecycle.attempts_of(ids[start : start + 500])):
            attempts.setdefault(attempt.delivery_id, []).append(attempt)
    return rows, attempts


async def replies_to(
    session: AsyncSession, principal: Principal, appointment_id: str, count: int = 100
) -> Sequence[InboundMessage]:
    """The latest replies by SMS or WhatsApp matched to an appointment, oldest first."""
    rows, _ = await list_replies(session, principal, {"appointment_id": appointment_id}, count, 0)
    return list(reversed(rows))


async def occurrences(
    session: AsyncSession, master: Any, around: datetime, count: int = 12, earlier: int = 3
) -> list[Appointment]:
    """Planned occurrences of a series around ``around``: up to ``earlier`` before it, then
    up to ``count`` from it on, in order."""
    of_series = select(Appointment).where(Appointment.master_id == master.id)
    before = await session.scalars(
        of_series.where(Appointment.original_start_at < around)
        .order_by(Appointment.original_start_at.desc())
        .limit(earlier)
    )
    after = await session.scalars(
        of_series.where(Appointment.original_start_at >= around)
        .order_by(Appointment.original_start_at)
        .limit(count)
    )
    return [*reversed(before.all()), *after.all()]


async def inbox_of(
    session: AsyncSession, principal: Principal, user_id: str, page: int
) -> tuple[Sequence[InboxItem], int]:
    conditions = [InboxItem.location_id == principal.location_id, InboxItem.user_id == user_id]
    total = await session.scalar(select(func.count()).select_from(InboxItem).where(*conditions))
    rows = await session.scalars(
        select(InboxItem)
        .where(*conditions)
        .order_by(InboxItem.created_at.desc(), InboxItem.id.desc())
        .limit(PAGE)
        .offset((page - 1) * PAGE)
    )
    return rows.all(), int(total or 0)


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
