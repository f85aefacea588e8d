"""Plan preview: the deliveries an appointment would get, rendered, with nothing stored and
nothing sent (a calnotify extension, docs/api.md "Plan preview").

The appointment is built in memory (or copied from a stored one) and given to the
planner's pure parts (:func:`~calnotify.planning.planner.wanted_deliveries`,
:func:`~calnotify.planning.planner.planned_state`), so a preview answers what booking or
changing it would plan, skips included. Nothing is added to the session: the preview works
in a read-only unit of work and never takes SQLite's write lock.

Each message is drafted and composed by the same functions as the dispatcher's
(:func:`calnotify.compose.draft.draft`, :func:`calnotify.compose.compose.compose`: the
recipient's zone, the rule's stored template, the sender and the invitation), in the
service's render processes within the render budget: a preview is the message, without
the hand-over. A preview is bounded whatever its input: at most :data:`MAX_OCCURRENCES`
occurrences of a series, :data:`MAX_DELIVERIES` deliveries and :data:`MAX_CONTENT_CHARS` of
rendered text; renders start only within one budget of the first one, and a rule whose
message failed to render (a limit, its budget) is not rendered again in the same preview.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.applications import Starlette

from calnotify.appointments import series
from calnotify.appointments.recurrence import RecurrenceError, parse
from calnotify.appointments.service import (
    calendar_default_user,
    check_span,
    checked_guests,
    get_appointment,
    location_zone,
)
from calnotify.auth.tokens import Principal
from calnotify.calendars.service import get_calendar
from calnotify.channels.base import Message
from calnotify.channels.senders import AllowedSenders, SenderSettings, allowed_senders
from calnotify.compose.draft import Recipient, draft, recipient_zone
from calnotify.compose.pool import ComposePool
from calnotify.contacts.service import build_contact
from calnotify.db.scoped import find_in_location
from calnotify.errors import BadRequest, FieldError, NotFound
from calnotify.ids import new_id
from calnotify.models import Appointment, Calendar, Contact, Notification, User
from calnotify.models.appointment import AppointmentEventKind, AppointmentStatus
from calnotify.models.delivery import RecipientKind
from calnotify.models.notification import Channel, NotificationType, ReceiverType
from calnotify.notifications import repository
from calnotify.notifications.rules import offset_seconds
from calnotify.notifications.schemas import (
    PreviewContactIn,
    PreviewDeliveryOut,
    PreviewOut,
    PreviewRecipientOut,
    PreviewRequest,
)
from calnotify.notifications.service import draft_errors, draft_of
from calnotify.planning.planner import (
    ENDED,
    Wanted,
    _people,
    _rules,
    immediate_types,
    planned_state,
    wanted_deliveries,
)
from calnotify.planning.recipients import People, Resolved
from calnotify.templates.render import RenderData, RenderError
from calnotify.timefmt import parse_instant, show_local

log = logging.getLogger("calnotify.preview")

MAX_OCCURRENCES = 10
MAX_DELIVERIES = 500
# Rendered subject + text + html over every delivery shown: a hostile template can write
# 256 KiB per message, and a preview must not answer with hundreds of megabytes.
MAX_CONTENT_CHARS = 2 * 1024 * 1024

# Who a preview without contactId or contact is for, so that it shows every message.
SAMPLE_CONTACT = PreviewContactIn(
    first_name="Sample", last_name="Contact", email="sample@example.com", phone="+15550100"
)
# The fields that describe a hypothetical appointment; a stored one (appointmentId) has its own.
_APPOINTMENT_FIELDS = {
    "start_time": "startTime",
    "end_time": "endTime",
    "contact_id": "contactId",
    "contact": "contact",
    "assigned_user_id": "assignedUserId",
    "appointment_status": "appointmentStatus",
    "title": "title",
    "address": "address",
    "notes": "notes",
    "guests": "guests",
    "rrule": "rrule",
}
_EVENT_KINDS = {
    "booked": AppointmentEventKind.CREATED,
    "rescheduled": AppointmentEventKind.RESCHEDULED,
    "cancelled": AppointmentEventKind.STATUS_CHANGED,
    "confirmed": AppointmentEventKind.STATUS_CHANGED,
}
_RECIPIENT_KINDS = {
    RecipientKind.CONTACT: "contact",
    RecipientKind.GUEST: "guest",
    RecipientKind.USER: "user",
    RecipientKind.ADDRESS: "additional",
    RecipientKind.LOCATION: "location",
}
OUT_OF_TIME = "not rendered: this preview used up its rendering time"
OUT_OF_ROOM = f"not shown: this preview's messages are over {MAX_CONTENT_CHARS} characters"


@dataclass(frozen=True, slots=True)
class PreviewOptions:
    """How a preview plans and composes: the service's planning horizon (series), its
    render processes, and its senders (semantics §7)."""

    pool: ComposePool
    senders: SenderSettings
    horizon: timedelta = series.DEFAULT_HORIZON

    @classmethod
    def of(cls, app: Starlette) -> PreviewOptions:
        """The options of a running app: its settings and its render processes."""
        settings = app.state.settings
        return cls(
            pool=app.state.compose_pool,
            senders=settings,
            horizon=timedelta(days=settings.planning_horizon_days),
        )


@dataclass(frozen=True, slots=True)
class _Planned:
    """One wanted delivery, with the appointment it is for and how it is planned."""

    wanted: Wanted
    appointment: Appointment
    resolved: Resolved
    skip: str | None


async def preview_plan(
    session: AsyncSession,
    principal: Principal,
    calendar_id: str,
    request: PreviewRequest,
    now: datetime,
    options: PreviewOptions,
) -> PreviewOut:
    """The deliveries ``request`` would get on the calendar, by due time, rendered.

    Reads only (nothing is added, flushed or sent). 404 for a calendar that is not the
    token's location's; 400 naming each field in error, draft rules as a create names them
    (``notifications[2].channel``).
    """
    calendar = await get_calendar(session, principal, calendar_id)
    where = await location_zone(session, principal.location_id)
    errors: list[FieldError] = []
    rules = await _preview_rules(session, principal, calendar, request, errors)
    if request.appointment_id is not None:
        for name, wire in _APPOINTMENT_FIELDS.items():
            if getattr(request, name) is not None:
                errors.append(FieldError(wire, "cannot be combined with appointmentId"))
        if errors:
            raise BadRequest(errors)
        appointment, contact = await _stored(session, principal, calendar, request.appointment_id)
    else:
        appointment, contact = await _hypothetical(
            session, principal, calendar, request, where, now, errors
        )
    if errors:
        raise BadRequest(errors)

    event = request.event or "booked"
    appointment.status = _status_after(event, appointment.status)
    immediate = [(0, t) for t in immediate_types(_EVENT_KINDS[event], appointment.status)]
    occurrences = await _occurrences(
        session,
        appointment,
        rules,
        where,
        now,
        options.horizon,
        stored=request.appointment_id is not None,
    )
    people = await _people(session, principal.location_id, [appointment.contact_id])
    if contact is not None:
        people.contacts[contact.id] = contact

    planned: list[_Planned] = []
    for item, sends in [(appointment, immediate), *((o, []) for o in occurrences)]:
        for wanted in {
            w.key: w for w in wanted_deliveries(item, rules, people, now, sends)
        }.values():
            resolved, skip = planned_state(wanted, item, people, now)
            planned.append(_Planned(wanted, item, resolved, skip))
    planned.sort(key=lambda p: p.wanted.due_at)  # stable: rule order, then recipient order

    templates = await repository.template_sources(
        session, principal.location_id, {r.template_id for r in rules if r.template_id}
    )
    shown = planned[:MAX_DELIVERIES]
    allowed = (await allowed_senders(session, [principal.location_id]))[principal.location_id]
    renderer = _Renderer(
        calendar, people, templates, allowed, options, now, unsaved_contact=contact
    )
    deliveries = await renderer.all(shown)
    return PreviewOut(deliveries=deliveries, truncated=len(planned) > len(shown))


# --- what is previewed -----------------------------------------------------------------------


async def _preview_rules(
    session: AsyncSession,
    principal: Principal,
    calendar: Calendar,
    request: PreviewRequest,
    errors: list[FieldError],
) -> list[Notification]:
    """The calendar's active rules in creation order, or the draft rules of the request
    (checked as a create checks them), as unsaved rows."""
    if request.notifications is None:
        stored = await _rules(session, calendar.id)
        return sorted(stored, key=lambda r: (r.date_added, r.batch_index, r.id))
    drafts = [draft_of(item) for item in request.notifications]
    prefixes = [f"notifications[{i}]." for i in range(len(drafts))]
    errors.extend(await draft_errors(session, principal, drafts, prefixes, saving=False))
    return [
        Notification(
            id=f"draft-{i}",
            location_id=calendar.location_id,
            calendar_id=calendar.id,
            batch_index=i,
            version=1,
            planned_version=1,
            **draft.as_columns(),
        )
        for i, draft in enumerate(drafts)
    ]


async def _stored(
    session: AsyncSession, principal: Principal, calendar: Calendar, appointment_id: str
) -> tuple[Appointment, None]:
    """A copy of a stored appointment of the calendar (a series, or one occurrence of it)."""
    not_found = BadRequest([FieldError("appointmentId", "is not an appointment of this calendar")])
    try:
        row = await get_appointment(session, principal, appointment_id)
    except NotFound:
        raise not_found from None
    if row.deleted or row.calendar_id != calendar.id:
        raise not_found
    return _copy(row), None


async def _hypothetical(
    session: AsyncSession,
    principal: Principal,
    calendar: Calendar,
    request: PreviewRequest,
    where: ZoneInfo,
    now: datetime,
    errors: list[FieldError],
) -> tuple[Appointment, Contact | None]:
    """The appointment the request describes, and its contact when it is not a stored one
    (``None``: ``contactId``)."""
    start = end = None
    for name, wire in (("start_time", "startTime"), ("end_time", "endTime")):
        value = getattr(request, name)
        instant = parse_instant(value, where) if value is not None else None
        if value is None:
            errors.append(FieldError(wire, "is required without appointmentId"))
        elif instant is None:
            errors.append(FieldError(wire, "must be an ISO 8601 date and time"))
        if name == "start_time":
            start = instant
        else:
            end = instant
    if start is not None and end is not None:
        check_span(start, end, errors)
    rrule = (request.rrule or "").strip()
    if rrule and start is not None:
        try:
            parse(rrule, start, where)
        except RecurrenceError as exc:
            errors.append(FieldError("rrule", str(exc)))
    guests = checked_guests(request.guests or [], errors)

    contact: Contact | None = None
    contact_id = ""
    if request.contact_id is not None and request.contact is not None:
        errors.append(FieldError("contact", "give contactId or contact, not both"))
    elif request.contact_id is not None:
        found = await find_in_location(session, Contact, request.contact_id, principal.location_id)
        if found is None:
            errors.append(FieldError("contactId", "is not a contact of this location"))
        else:
            contact_id = found.id
    else:
        contact = _inline_contact(principal.location_id, request, errors)
        contact_id = contact.id

    assigned: str | None
    if request.assigned_user_id is None:
        assigned = await calendar_default_user(session, calendar)
    elif request.assigned_user_id == "":
        assigned = None
    else:
        user = await find_in_location(session, User, request.assigned_user_id, calendar.location_id)
        if user is None:
            errors.append(FieldError("assignedUserId", "is not a user of this location"))
        assigned = user.id if user else None
    if start is None or end is None:
        start = end = now  # only errors are answered
    appointment = Appointment(
        id=new_id(),
        location_id=calendar.location_id,
        calendar_id=calendar.id,
        contact_id=contact_id,
        assigned_user_id=assigned,
        start_at=start,
        end_at=end,
        title=request.title or "",
        status=request.appointment_status or AppointmentStatus.NEW,
        address=request.address or "",
        meeting_location_type="",
        description="",
        notes=request.notes or "",
        to_notify=True,
        rrule=rrule,
        guests=guests,
        extra={},
        version=1,
        deleted=False,
        master_id=None,
        original_start_at=None,
        is_exception=False,
        materialized_until=None,
        planned_until=None,
        date_added=now,
        date_updated=now,
    )
    return appointment, contact


def _inline_contact(location_id: str, request: PreviewRequest, errors: list[FieldError]) -> Contact:
    """The request's inline contact, else the sample one; never stored."""
    try:
        contact = build_contact(location_id, request.contact or SAMPLE_CONTACT)
    except BadRequest as exc:
        errors.extend(FieldError(f"contact.{e.field}", e.message) for e in exc.errors)
        contact = build_contact(location_id, SAMPLE_CONTACT)  # only errors are answered
    contact.id = new_id()
    return contact


def _status_after(event: str, status: str) -> str:
    """The appointment's status once ``event`` happened to it."""
    if event == "confirmed":
        return AppointmentStatus.CONFIRMED
    if event == "cancelled":
        return status if status in ENDED else AppointmentStatus.CANCELLED
    return status


async def _occurrences(
    session: AsyncSession,
    appointment: Appointment,
    rules: Sequence[Notification],
    where: ZoneInfo,
    now: datetime,
    horizon: timedelta,
    *,
    stored: bool,
) -> list[Appointment]:
    """The occurrences of a series whose reminders and follow-ups would be planned now, as
    the series planner reaches them (due within the horizon), at most
    :data:`MAX_OCCURRENCES`; none for a single appointment. ``stored``: the series exists
    (its occurrences changed on their own are rows)."""
    planned_until = now + horizon
    if appointment.master_id is not None:
        appointment.planned_until = planned_until  # one occurrence: within the horizon too
    if not series.is_master(appointment):
        return []
    longest = max(
        (
            offset_seconds(entry)
            for rule in rules
            if rule.notification_type == NotificationType.REMINDER
            for entry in rule.before_time
        ),
        default=0.0,
    )
    reach = planned_until + timedelta(seconds=longest)
    if not stored:
        recurrence = parse(appointment.rrule, appointment.start_at, where)
        duration = appointment.end_at - appointment.start_at
        starts = [s for s in recurrence.starts(now - duration, reach) if s + duration > now]
        found = [series.occurrence(appointment, s, now) for s in starts[:MAX_OCCURRENCES]]
    else:
        found = [
            _copy(row)
            for row in (await series.occurrences_between(session, appointment, now, reach))[
                :MAX_OCCURRENCES
            ]
        ]
    for row in found:
        row.planned_until = planned_until
        # Occurrences follow the series' status; its end reaches those changed on their own.
        if not row.is_exception or appointment.status in ENDED:
            row.status = appointment.status
    return found


def _copy(row: Appointment) -> Appointment:
    """An unsaved copy of an appointment: a preview changes what it looks at (status,
    horizon) and must never write those changes back."""
    values = {attr.key: getattr(row, attr.key) for attr in inspect(Appointment).column_attrs}
    values["guests"] = list(values.get("guests") or [])
    return Appointment(**values)


# --- rendering ---------------------------------------------------------------------------------


class _Renderer:
    """Composes the planned deliveries of one preview: each distinct message once
    (recipients of one rule, zone and audience share it), within the preview's time and
    size bounds."""

    def __init__(
        self,
        calendar: Calendar,
        people: People,
        templates: dict[str, tuple[str, str]],
        allowed: AllowedSenders,
        options: PreviewOptions,
        now: datetime,
        *,
        unsaved_contact: Contact | None,
    ) -> None:
        self.calendar = calendar
        self.people = people
        self.templates = templates
        self.allowed = allowed
        self.options = options
        self.now = now
        # An inline or sample contact: its id is made up, and not shown.
        self.unsaved_contact = unsaved_contact
        self.cache: dict[tuple[str, int, str, str], Message | str] = {}
        self.failed: dict[str, str] = {}  # rule id → its render error
        self.content = 0

    async def all(self, planned: Sequence[_Planned]) -> list[PreviewDeliveryOut]:
        # Composing starts within one budget of the first: with the last one's own budget,
        # a preview composes for at most two budgets, whatever its templates.
        start_before = time.monotonic() + self.options.pool.budget_seconds
        return [await self.one(item, start_before) for item in planned]

    async def one(self, item: _Planned, start_before: float) -> PreviewDeliveryOut:
        rule, appointment = item.wanted.notification, item.appointment
        kind = item.wanted.recipient.kind
        contact = self.people.contacts.get(appointment.contact_id)
        where = recipient_zone(kind, contact, self.people.location)
        key = (rule.id, id(appointment), where.key, item.resolved.address)
        outcome = self.cache.get(key)
        if outcome is None:
            outcome = await self._compose(item, start_before)
            self.cache[key] = outcome

        subject = text = html = error = None
        if isinstance(outcome, str):
            error = outcome
        else:
            size = len(outcome.subject) + len(outcome.body) + len(outcome.html)
            if self.content + size > MAX_CONTENT_CHARS:
                error = OUT_OF_ROOM
            else:
                self.content += size
                if rule.channel in (Channel.EMAIL, Channel.IN_APP):
                    subject = outcome.subject
                text = outcome.body
                if rule.channel == Channel.EMAIL:
                    html = outcome.html
        return PreviewDeliveryOut(
            notification_id=rule.id,
            notification_type=NotificationType(rule.notification_type),
            channel=Channel(rule.channel),
            receiver_type=ReceiverType(rule.receiver_type),
            recipient=self._recipient(item, contact),
            due_at=item.wanted.due_at,
            due_at_local=show_local(item.wanted.due_at, where),
            status="skipped" if item.skip else "planned",
            skip_reason=item.skip or None,
            subject=subject,
            text=text,
            html=html,
            render_error=error,
            instance_id=series.wire_id(appointment) if appointment.master_id else None,
        )

    async def _compose(self, item: _Planned, start_before: float) -> Message | str:
        rule, appointment = item.wanted.notification, item.appointment
        if rule.id in self.failed:
            return self.failed[rule.id]
        if time.monotonic() > start_before:
            return OUT_OF_TIME
        template = self.templates.get(rule.template_id) if rule.template_id else None
        people = self.people
        user = item.resolved.user
        message = draft(
            delivery_id="preview",
            wire_id=series.wire_id(appointment),
            notification_type=rule.notification_type,
            rule=rule,
            template=template,
            data=RenderData(
                appointment=appointment,
                calendar=self.calendar,
                location=people.location,
                contact=people.contacts.get(appointment.contact_id),
                user=people.users.get(appointment.assigned_user_id or ""),
            ),
            recipient=Recipient(
                item.wanted.recipient.kind, item.resolved.address, user.id if user else ""
            ),
            allowed=self.allowed,
            senders=self.options.senders,
            now=self.now,
        )
        try:
            return (await self.options.pool.compose(people.location.id, message)).message
        except RenderError as exc:
            # A template that hit a limit or its budget would hit it again for the rule's
            # next message (and spend its whole budget on it): its error stands for them.
            self.failed[rule.id] = str(exc)
            return str(exc)
        except Exception as exc:  # a fault in composing one message is that message's own
            log.exception("preview: cannot compose rule %s", rule.id)
            return f"cannot render: {type(exc).__name__}"

    def _recipient(self, item: _Planned, contact: Contact | None) -> PreviewRecipientOut:
        ref = item.wanted.recipient
        name, found_id = "", None
        if ref.kind == RecipientKind.CONTACT and contact is not None:
            name = contact.name
            found_id = None if contact is self.unsaved_contact else contact.id
        elif ref.kind == RecipientKind.USER:
            user = self.people.users.get(ref.ref)
            name, found_id = (user.name if user else ""), ref.ref or None
        elif ref.kind == RecipientKind.GUEST:
            name = _guest_name(item.appointment.guests or [], ref.ref)
        elif ref.kind == RecipientKind.LOCATION:
            name, found_id = self.people.location.name, self.people.location.id
        return PreviewRecipientOut(
            kind=_RECIPIENT_KINDS[RecipientKind(ref.kind)],
            id=found_id,
            name=name,
            address=item.resolved.address,
        )


def _guest_name(guests: Sequence[dict[str, Any]], ref: str) -> str:
    """The name of the guest a recipient reference points at (its email, or ``#i``)."""
    for i, guest in enumerate(guests):
        if ref in (str(guest.get("email") or ""), f"#{i}"):
            return str(guest.get("name") or "")
    return ""
