"""Plan preview: the deliveries an appointment would get, rendered, with nothing stored and
nothing sent (a calnotify extension, docs/api.md "Plan preview").

The appointment is built in memory (or copied from a stored one) and given to the
planner's pure parts (:func:`~calnotify.planning.planner.wanted_deliveries`,
:func:`~calnotify.planning.planner.planned_state`), so a preview answers what booking or
changing it would plan, skips included. A preview only reads (compiled statements, outside
any transaction) and never takes SQLite's write lock.

Each message is drafted and composed by the same functions as the dispatcher's
(:func:`calnotify.compose.draft.draft`, :func:`calnotify.compose.compose.compose`: the
recipient's zone, the rule's stored template, the sender and the invitation), in the
service's render processes within the render budget: a preview is the message, without
the hand-over. A preview is bounded whatever its input: at most :data:`MAX_OCCURRENCES`
occurrences of a series, :data:`MAX_DELIVERIES` deliveries and a bounded size of rendered
text (:mod:`calnotify.notifications.preview_compose`); renders start only within one budget
of the first one, and a rule whose message failed to render (a limit, its budget) is not
rendered again in the same preview.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from starlette.applications import Starlette

from calnotify.appointments import reads, series
from calnotify.appointments.checks import check_span, checked_guests, default_user
from calnotify.appointments.recurrence import RecurrenceError, parse
from calnotify.appointments.rows import AppointmentRow
from calnotify.appointments.service import Context, read_context
from calnotify.auth.tokens import Principal
from calnotify.channels.senders import SenderSettings, allowed_senders
from calnotify.compose.pool import ComposePool
from calnotify.contacts.service import build_contact
from calnotify.db.tx import Reader
from calnotify.errors import BadRequest, FieldError, NotFound
from calnotify.ids import new_id
from calnotify.models.appointment import AppointmentEventKind, AppointmentStatus
from calnotify.notifications import repository
from calnotify.notifications.preview_compose import Planned, Renderer, Sources
from calnotify.notifications.preview_scopes import scoped_deliveries, scoped_sources
from calnotify.notifications.schemas import PreviewContactIn, PreviewOut, PreviewRequest
from calnotify.notifications.service import checked, draft_of
from calnotify.planning import store
from calnotify.planning.planner import ENDED, immediate_sends, planned_state, wanted_deliveries
from calnotify.timefmt import parse_instant

MAX_OCCURRENCES = 10
MAX_DELIVERIES = 500

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


@dataclass(frozen=True, slots=True)
class PreviewOptions:
    """How a preview plans and composes: the service's planning horizon (series), its
    render processes, and its senders (docs/semantics.md §7)."""

    pool: ComposePool
    senders: SenderSettings
    horizon: timedelta = series.DEFAULT_HORIZON
    public_url: str = ""  # a preview's action links are samples under it

    @classmethod
    def of(cls, app: Starlette) -> PreviewOptions:
        """The options of a running app: its settings and its render processes."""
        settings = app.state.settings
        return cls(
            pool=app.state.compose_pool,
            senders=settings,
            horizon=timedelta(days=settings.planning_horizon_days),
            public_url=settings.links_url,
        )


async def preview_plan(
    reader: Reader,
    principal: Principal,
    calendar_id: str,
    request: PreviewRequest,
    now: datetime,
    options: PreviewOptions,
) -> PreviewOut:
    """The deliveries ``request`` would get on the calendar, by due time, rendered.

    Reads only (nothing is written or sent). 404 for a calendar that is not the token's
    location's; 400 naming each field in error, draft rules as a create names them
    (``notifications[2].channel``).
    """
    contact_ids = [request.contact_id] if request.contact_id else []
    context = await read_context(reader, principal, [calendar_id], contact_ids, lock=False)
    calendar = context.calendars.get(calendar_id)
    if calendar is None:
        raise NotFound("Calendar not found")
    errors: list[FieldError] = []
    rules = await _preview_rules(reader, principal, context, calendar, request, errors)
    unsaved_contact = None
    if request.appointment_id is not None:
        for name, wire in _APPOINTMENT_FIELDS.items():
            if getattr(request, name) is not None:
                errors.append(FieldError(wire, "cannot be combined with appointmentId"))
        if errors:
            raise BadRequest(errors)
        appointment = await _stored(reader, principal, calendar, request.appointment_id)
        [contacts] = await reader.fetch((store.CONTACTS, {"contact_ids": [appointment.contact_id]}))
        context.people.contacts.update((c.id, c) for c in contacts)
    else:
        appointment, unsaved_contact = _hypothetical(context, calendar, request, now, errors)
    if errors:
        raise BadRequest(errors)

    event = request.event or "booked"
    appointment.status = _status_after(event, appointment.status)
    # A booking of what has already started plans its message skipped (past), as booking does.
    past = event == "booked" and series.started(appointment, context.zone, now)
    immediate = immediate_sends(
        [store.Event(0, _EVENT_KINDS[event], True, appointment.status, past)]
    )
    occurrences = await _occurrences(
        reader, appointment, rules, context.zone, now, options.horizon,
        stored=request.appointment_id is not None,
    )  # fmt: skip
    people = context.people
    planned: list[Planned] = []
    for item, sends in [(appointment, immediate), *((o, []) for o in occurrences)]:
        for wanted in wanted_deliveries(item, rules, people, now, sends).values():
            resolved, skip = planned_state(wanted, item, people, now)
            planned.append(Planned(wanted, item, resolved, skip))
    planned.sort(key=lambda p: p.wanted.due_at)  # stable: rule order, then recipient order

    location_id = principal.location_id
    templates = await repository.template_sources(
        reader, location_id, {r.template_id for r in rules if r.template_id}
    )
    allowed = (await allowed_senders(reader, [location_id]))[location_id]
    sources = scoped_sources(
        principal, Sources(calendar, people, templates, allowed, unsaved_contact)
    )
    shown = planned[:MAX_DELIVERIES]
    deliveries = await Renderer(
        sources, options.pool, options.senders, now, options.public_url
    ).all(shown)
    return PreviewOut(
        deliveries=scoped_deliveries(principal, deliveries), truncated=len(planned) > len(shown)
    )


# --- what is previewed -----------------------------------------------------------------------


async def _preview_rules(
    reader: Reader,
    principal: Principal,
    context: Context,
    calendar: Any,
    request: PreviewRequest,
    errors: list[FieldError],
) -> list[Any]:
    """The calendar's active rules in creation order, or the draft rules of the request
    (checked as a create checks them), as unsaved rows."""
    if request.notifications is None:
        stored = context.rules.get(calendar.id, [])
        return sorted(stored, key=lambda r: (r.date_added, r.batch_index, r.id))
    prefixes = [f"notifications[{i}]." for i in range(len(request.notifications))]
    drafts, found = await checked(
        reader, principal, [draft_of(item) for item in request.notifications], prefixes
    )
    errors.extend(found)
    return [
        repository.RuleRow(
            **repository.new_rule(
                {
                    "id": f"draft-{i}",
                    "location_id": calendar.location_id,
                    "calendar_id": calendar.id,
                    "batch_index": i,
                    "deleted": False,
                    "date_added": None,
                    "date_updated": None,
                    **repository.columns_of(draft),
                }
            )
        )
        for i, draft in enumerate(drafts)
    ]


async def _stored(
    reader: Reader, principal: Principal, calendar: Any, appointment_id: str
) -> AppointmentRow:
    """A copy of a stored appointment of the calendar (a series, or one occurrence of it):
    a preview changes what it looks at (status, horizon) and never writes it back."""
    not_found = BadRequest([FieldError("appointmentId", "is not an appointment of this calendar")])
    try:
        row = await reads.get_appointment(reader, principal, appointment_id)
    except NotFound:
        raise not_found from None
    if row.deleted or row.calendar_id != calendar.id:
        raise not_found
    return row.copy()


def _hypothetical(
    context: Context,
    calendar: Any,
    request: PreviewRequest,
    now: datetime,
    errors: list[FieldError],
) -> tuple[AppointmentRow, Any]:
    """The appointment the request describes, and its contact when it is not a stored one
    (``None``: ``contactId``)."""
    where = context.zone
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
    contact, contact_id = _contact(context, calendar.location_id, request, errors)
    people = context.people
    assigned: str | None
    if request.assigned_user_id is None:
        assigned = default_user(calendar, people)
    elif request.assigned_user_id == "":
        assigned = None
    elif request.assigned_user_id in people.users:
        assigned = request.assigned_user_id
    else:
        errors.append(FieldError("assignedUserId", "is not a user of this location"))
        assigned = None
    if start is None or end is None:
        start = end = now  # only errors are answered
    appointment = AppointmentRow.new(
        stamped=now,
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
    )
    return appointment, contact


def _contact(
    context: Context, location_id: str, request: PreviewRequest, errors: list[FieldError]
) -> tuple[Any, str]:
    """The unsaved contact the request describes (None for a stored one), and its id."""
    if request.contact_id is not None and request.contact is not None:
        errors.append(FieldError("contact", "give contactId or contact, not both"))
        return None, ""
    if request.contact_id is not None:
        if request.contact_id not in context.people.contacts:
            errors.append(FieldError("contactId", "is not a contact of this location"))
            return None, ""
        return None, request.contact_id
    # The request's inline contact, else the sample one; never stored.
    try:
        contact = build_contact(location_id, request.contact or SAMPLE_CONTACT)
    except BadRequest as exc:
        errors.extend(FieldError(f"contact.{e.field}", e.message) for e in exc.errors)
        contact = build_contact(location_id, SAMPLE_CONTACT)  # only errors are answered
    contact.id = new_id()
    context.people.contacts[contact.id] = contact
    return contact, contact.id


def _status_after(event: str, status: str) -> str:
    """The appointment's status once ``event`` happened to it."""
    if event == "confirmed":
        return AppointmentStatus.CONFIRMED
    if event == "cancelled":
        return status if status in ENDED else AppointmentStatus.CANCELLED
    return status


async def _occurrences(
    reader: Reader,
    appointment: AppointmentRow,
    rules: Sequence[Any],
    where: ZoneInfo,
    now: datetime,
    horizon: timedelta,
    *,
    stored: bool,
) -> list[AppointmentRow]:
    """The occurrences of a series whose reminders and follow-ups would be planned now, as
    the series planner reaches them (due within the horizon), at most
    :data:`MAX_OCCURRENCES`; none for a single appointment. ``stored``: the series exists
    (its occurrences changed on their own are rows)."""
    planned_until = now + horizon
    if appointment.master_id is not None:
        appointment.planned_until = planned_until  # one occurrence: within the horizon too
    if not series.is_master(appointment):
        return []
    reach = planned_until + series.lead(rules)
    if not stored:
        recurrence = parse(appointment.rrule, appointment.start_at, where)
        duration = appointment.end_at - appointment.start_at
        starts = [s for s in recurrence.starts(now - duration, reach) if s + duration > now]
        found = [series.occurrence(appointment, s, now) for s in starts[:MAX_OCCURRENCES]]
    else:
        between = await series.occurrences_between(reader, appointment, now, reach)
        found = [row.copy() for row in between[:MAX_OCCURRENCES]]
    for row in found:
        row.planned_until = planned_until
        # Occurrences follow the series' status; its end reaches those changed on their own.
        if not row.is_exception or appointment.status in ENDED:
            row.status = appointment.status
    return found
