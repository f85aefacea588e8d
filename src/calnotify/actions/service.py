"""The appointment page's reads and actions (docs/semantics.md §8, "The page").

A link opens the page of one appointment (:func:`open_page`): its token is checked against
the server's secrets and the appointment's contact, and the appointment must exist and not
have ended more than :data:`GRACE` ago; anything else is :class:`LinkNotFound`, which
reveals nothing. An action (:func:`act`) goes through the appointment service
(:func:`calnotify.appointments.service.update_in`), so the calendar's rules fire as for the
API, and is recorded as an event of the appointment with ``source: contact`` and the
channel the link came in. The page's form carries the appointment's version: an action
on a page that is out of date changes nothing and shows how the appointment stands now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select

from calnotify.actions.keys import LinkKeys
from calnotify.actions.tokens import parse, verified
from calnotify.appointments import series
from calnotify.appointments.schemas import AppointmentUpdate
from calnotify.appointments.service import update_in
from calnotify.auth.tokens import Principal
from calnotify.availability.service import Range, free_slots_by_day
from calnotify.availability.settings import settings_of
from calnotify.db.engine import Database
from calnotify.db.statements import Statement
from calnotify.errors import AppError
from calnotify.models import Appointment, AppointmentEvent, Calendar, Contact, Location
from calnotify.models.appointment import AppointmentEventKind, AppointmentStatus, EventSource
from calnotify.planning import store
from calnotify.timefmt import parse_instant, zone

GRACE = timedelta(days=1)  # a link works until a day after its appointment ends
MAX_REASON = 500
SLOT_DAYS = 14  # the reschedule choice shows this many days at a time
MAX_SLOT_PAGES = 4  # "more" goes this many times 14 days ahead, at most
_OPEN = (AppointmentStatus.NEW.value, AppointmentStatus.CONFIRMED.value)

_APPOINTMENT = Statement(
    select(*Appointment.__table__.c).where(Appointment.id == bindparam("appointment_id"))
)
_CALENDAR = Statement(select(*Calendar.__table__.c).where(Calendar.id == bindparam("calendar_id")))
_LOCATION = Statement(select(*Location.__table__.c).where(Location.id == bindparam("location_id")))
# Whether the appointment was ever moved (the page says so plainly).
_MOVED = Statement(
    select(AppointmentEvent.id)
    .where(
        AppointmentEvent.appointment_id == bindparam("appointment_id"),
        AppointmentEvent.kind == AppointmentEventKind.RESCHEDULED.value,
    )
    .limit(1)
)
_CONTACT = Statement(
    select(Contact.first_name, Contact.timezone).where(Contact.id == bindparam("contact_id"))
)


class LinkNotFound(Exception):
    """A link that is not one of ours, tampered with, expired, or whose appointment is gone."""


class Action(StrEnum):
    CONFIRM = "confirm"
    CANCEL = "cancel"
    RESCHEDULE = "reschedule"


@dataclass(frozen=True)
class Page:
    """What the page of a link shows."""

    appointment: Any
    calendar: Any
    location: Any
    first_name: str
    where: ZoneInfo  # the contact's zone, else the location's
    channel: str  # the channel the link came in
    now: datetime
    moved: bool = False  # rescheduled since it was booked

    @property
    def wire_id(self) -> str:
        return series.wire_id(self.appointment)

    @property
    def state(self) -> str:
        """``open``, ``cancelled`` (also no-show, invalid) or ``past``."""
        if self.appointment.status not in _OPEN and self.appointment.status != "showed":
            return "cancelled"
        if self.appointment.start_at <= self.now or self.appointment.status == "showed":
            return "past"
        return "open"

    @property
    def within_notice(self) -> bool:
        """Whether the appointment starts inside the calendar's minimum notice."""
        notice = settings_of(self.calendar).booking_after
        start: datetime = self.appointment.start_at
        return start < notice.from_now(self.now, zone(self.location.timezone))

    def allowed(self, action: Action) -> bool:
        if self.state != "open":
            return False
        if action is Action.CONFIRM:
            return bool(self.appointment.status == AppointmentStatus.NEW.value)
        if self.within_notice:
            return False
        if action is Action.CANCEL:
            return bool(self.calendar.allow_cancellation)
        return bool(self.calendar.allow_reschedule) and not self.appointment.rrule


async def open_page(db: Database, keys: LinkKeys, token: str, now: datetime) -> Page:
    """The page ``token`` opens; :class:`LinkNotFound` for a bad, tampered or expired one."""
    parsed = parse(token)
    if parsed is None:
        raise LinkNotFound
    known = await keys.get(db, now, key_byte=parsed.key_byte)
    [found] = await db.fetch((_APPOINTMENT, {"appointment_id": parsed.appointment_id}))
    if not found:
        raise LinkNotFound
    appointment = found[0]
    if (
        not verified(parsed, known, appointment.contact_id)
        or appointment.deleted
        or (not appointment.rrule and appointment.end_at + GRACE <= now)
    ):
        raise LinkNotFound
    calendars, locations, contacts, moved = await db.fetch(
        (_CALENDAR, {"calendar_id": appointment.calendar_id}),
        (_LOCATION, {"location_id": appointment.location_id}),
        (_CONTACT, {"contact_id": appointment.contact_id}),
        (_MOVED, {"appointment_id": appointment.id}),
    )
    if not calendars or not locations or calendars[0].deleted:
        raise LinkNotFound
    location = locations[0]
    contact = contacts[0] if contacts else None
    where = zone(contact.timezone if contact and contact.timezone else location.timezone)
    first_name = contact.first_name if contact else ""
    return Page(
        appointment, calendars[0], location, first_name, where, parsed.channel, now, bool(moved)
    )


async def slots(db: Database, page: Page, more: int) -> dict[str, list[str]]:
    """Free slots of the appointment's calendar for the reschedule choice: ``SLOT_DAYS``
    days, ``more`` times that far ahead; by day of the contact's zone."""
    start = page.now + timedelta(days=SLOT_DAYS * min(max(more, 0), MAX_SLOT_PAGES))
    asked = Range(start, start + timedelta(days=SLOT_DAYS), page.where, ())
    principal = Principal(token_id="", location_id=page.location.id, scopes=frozenset())
    days = await free_slots_by_day(db, principal, page.calendar.id, asked, page.now)
    own = page.appointment.start_at
    return {
        day: [s for s in found["slots"] if parse_instant(s, page.where) != own]
        for day, found in days.items()
    }


@dataclass(frozen=True)
class Done:
    """What an action did: ``outcome`` names it for the page (``stale``: the page was out
    of date, nothing changed); ``due``: something due to send was planned."""

    outcome: str
    due: bool = False


async def act(
    db: Database,
    page: Page,
    action: Action,
    fields: dict[str, str],
    horizon: timedelta,
) -> Done:
    """Do ``action`` from ``page`` with the form's ``fields`` (``version``: the appointment's
    version the page showed; ``reason`` of a cancellation; ``slot`` of a reschedule)."""
    version = fields.get("version", "")
    if not version.isdigit() or int(version) != page.appointment.version:
        return Done("stale")
    if not page.allowed(action):
        return Done("refused")
    change: dict[str, Any] = {"appointmentStatus": AppointmentStatus.CONFIRMED.value}
    if action is Action.CANCEL:
        reason = " ".join(fields.get("reason", "").split())
        if len(reason) > MAX_REASON:
            return Done("reason_too_long")
        change = {"appointmentStatus": AppointmentStatus.CANCELLED.value}
        if reason:
            notes = page.appointment.notes
            change["notes"] = (notes + "\n\n" if notes else "") + f"Cancellation reason: {reason}"
    elif action is Action.RESCHEDULE:
        start = parse_instant(fields.get("slot", "")[:64], page.where)
        if start is None or not await _is_free_slot(db, page, start):
            return Done("taken")
        length = page.appointment.end_at - page.appointment.start_at
        change = {"startTime": start.isoformat(), "endTime": (start + length).isoformat()}
    principal = Principal(token_id="", location_id=page.location.id, scopes=frozenset())
    async with db.transaction() as tx:
        # The version check and the change in one transaction, under the calendar's
        # planning lock: of two tabs racing, the second sees the first's change.
        await store.lock_calendar(tx, page.appointment.calendar_id)
        [now_row] = await tx.fetch((_APPOINTMENT, {"appointment_id": page.appointment.id}))
        if not now_row or now_row[0].version != page.appointment.version:
            return Done("stale")
        try:
            written = await update_in(
                tx,
                principal,
                page.wire_id,
                AppointmentUpdate.model_validate(change),
                page.now,
                horizon,
                source=EventSource.CONTACT,
                channel=page.channel,
            )
        except AppError:
            return Done("taken")  # the slot was booked meanwhile
    return Done(_DONE[action], written.due)


_DONE = {Action.CONFIRM: "confirmed", Action.CANCEL: "cancelled", Action.RESCHEDULE: "rescheduled"}


async def _is_free_slot(db: Database, page: Page, start: datetime) -> bool:
    """Whether ``start`` begins a free slot of the appointment's calendar now."""
    if start < page.now or start > page.now + timedelta(days=SLOT_DAYS * (MAX_SLOT_PAGES + 1)):
        return False
    principal = Principal(token_id="", location_id=page.location.id, scopes=frozenset())
    asked = Range(start, start, page.where, ())
    days = await free_slots_by_day(db, principal, page.calendar.id, asked, page.now)
    return any(parse_instant(s, page.where) == start for d in days.values() for s in d["slots"])
