"""Short lists of appointments, ORM objects for pages (docs/semantics.md §9): a search,
a series' occurrences around a moment, a contact's bookings, a calendar's next ones and an
appointment's history. Each is bounded by the token's location and by a count."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.auth.scopes import Scope
from calnotify.auth.tokens import Principal
from calnotify.models import Appointment, AppointmentEvent, Calendar, Contact

_ESCAPE = "\\"


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
    size: int,
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
        joined.order_by(Appointment.start_at, Appointment.id).limit(size).offset((page - 1) * size)
    )
    return [(a, c, n) for a, c, n in rows], int(total or 0)


async def occurrences_around(
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


async def of_contact(
    session: AsyncSession, principal: Principal, contact_id: str, count: int
) -> Sequence[Appointment]:
    """The contact's latest appointments in the location, newest first."""
    rows = await session.scalars(
        select(Appointment)
        .where(
            Appointment.contact_id == contact_id,
            Appointment.location_id == principal.location_id,
            Appointment.deleted.is_(False),
        )
        .order_by(Appointment.start_at.desc(), Appointment.id)
        .limit(count)
    )
    return rows.all()


async def upcoming_in(
    session: AsyncSession, principal: Principal, calendar_id: str, now: datetime, count: int
) -> Sequence[Appointment]:
    """The calendar's next single appointments (not series) from ``now``, in order."""
    rows = await session.scalars(
        select(Appointment)
        .where(
            Appointment.calendar_id == calendar_id,
            Appointment.location_id == principal.location_id,
            Appointment.deleted.is_(False),
            Appointment.start_at >= now,
            Appointment.rrule == "",
        )
        .order_by(Appointment.start_at)
        .limit(count)
    )
    return rows.all()


async def history(
    session: AsyncSession, location_id: str, appointment_id: str, count: int
) -> Sequence[AppointmentEvent]:
    """The appointment's latest events, newest first: what changed, and who changed it."""
    rows = await session.scalars(
        select(AppointmentEvent)
        .where(
            AppointmentEvent.appointment_id == appointment_id,
            AppointmentEvent.location_id == location_id,
        )
        .order_by(AppointmentEvent.id.desc())
        .limit(count)
    )
    return rows.all()
