"""The front desk: confirm, cancel, mark showed or no-show, and reschedule an appointment.

Each action is a change through the appointment service (the API's one write path), so the
calendar's rules fire exactly as through ``PUT /calendars/events/appointments/{id}``; its
events are recorded with ``source: console``, the token of the session that made it
(``actor``) and a cancellation's reason (docs/semantics.md §8).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from calnotify.appointments import reads, series, service
from calnotify.appointments.schemas import AppointmentUpdate
from calnotify.auth.scopes import Scope
from calnotify.auth.sessions import Operator
from calnotify.availability.service import Range, free_slots_by_day
from calnotify.console import words
from calnotify.console.web import (
    PREFIX,
    ConsoleRoute,
    PageError,
    first,
    now_utc,
    read_form,
    render,
    signed_in,
)
from calnotify.db.engine import Database
from calnotify.deps import DatabaseDep, Planning, PlanningDep
from calnotify.errors import BadRequest
from calnotify.models.appointment import AppointmentStatus, EventSource
from calnotify.timefmt import zone

if TYPE_CHECKING:
    from calnotify.models import AppointmentEvent

router = APIRouter(route_class=ConsoleRoute)

EventsWriter = Annotated[Operator, signed_in(Scope.EVENTS_WRITE)]

MAX_REASON = 500
MAX_ID = 48
SLOT_DAYS = 14
MAX_SLOTS = 80
HISTORY = 50

# The status buttons, by the status they set; cancelling has its own form (a reason).
MARKS = {
    AppointmentStatus.CONFIRMED.value: "Confirm",
    AppointmentStatus.SHOWED.value: "Mark showed",
    AppointmentStatus.NOSHOW.value: "Mark no-show",
}
# What the appointment page says after an action (``?done=``): fixed wording only.
DONE = {
    "confirmed": "Appointment confirmed.",
    "showed": "Marked as showed.",
    "noshow": "Marked as no-show.",
    "cancelled": "Appointment cancelled.",
    "rescheduled": "Appointment rescheduled.",
}


def _checked_id(appointment_id: str) -> str:
    if len(appointment_id) > MAX_ID:
        raise PageError(404, "Not found", "Appointment not found")
    return appointment_id


async def _change(
    request: Request,
    db: Database,
    operator: Operator,
    planning: Planning,
    appointment_id: str,
    body: dict[str, Any],
    note: str = "",
    seen: int | None = None,
) -> None:
    """The one change of every desk action: the appointment service's, in one transaction,
    recorded as the console's (the session's token) with ``note``. ``seen``: the version
    the page showed; when it has changed since (another desk, the API, the contact), nothing
    is changed and the page says so."""
    change = AppointmentUpdate.model_validate(body)
    async with db.transaction() as tx:
        if seen is not None:
            current = await reads.find(tx, operator.principal.location_id, appointment_id)
            if current is not None and current.version != seen:
                raise PageError(
                    409,
                    "Changed meanwhile",
                    "This appointment was changed after the page was opened: nothing was "
                    "changed now. Open it again to see it as it is, then try again.",
                )
        written = await service.update_in(
            tx,
            operator.principal,
            appointment_id,
            change,
            now_utc(request),
            planning.horizon,
            source=EventSource.CONSOLE,
            actor=operator.principal.token_id,
            note=note,
        )
    planning.planned(written.due)


def _version(fields: dict[str, list[str]]) -> int | None:
    """The appointment's version the form was shown with (an occurrence's page, whose row
    may not exist yet, sends none)."""
    text = first(fields, "version")
    return int(text) if text.isdigit() and len(text) < 10 else None


def _done(appointment_id: str, done: str) -> Response:
    return RedirectResponse(f"{PREFIX}/appointments/{appointment_id}?done={done}", status_code=303)


@router.post("/appointments/{appointment_id}/status")
async def mark(
    request: Request,
    appointment_id: str,
    operator: EventsWriter,
    db: DatabaseDep,
    planning: PlanningDep,
) -> Response:
    """Confirm, or mark showed or no-show."""
    fields = await read_form(request, operator.csrf)
    status = first(fields, "status")
    if status not in MARKS:
        raise PageError(400, "Bad request", "Choose confirmed, showed or no-show.")
    await _change(
        request,
        db,
        operator,
        planning,
        _checked_id(appointment_id),
        {"appointmentStatus": status},
        seen=_version(fields),
    )
    return _done(appointment_id, status)


@router.post("/appointments/{appointment_id}/cancel")
async def cancel(
    request: Request,
    appointment_id: str,
    operator: EventsWriter,
    db: DatabaseDep,
    planning: PlanningDep,
) -> Response:
    """Cancel, with an optional reason (at most 500 characters) kept on the event."""
    fields = await read_form(request, operator.csrf)
    reason = first(fields, "reason").strip()
    if len(reason) > MAX_REASON:
        raise PageError(
            400,
            "Bad request",
            f"The reason is {len(reason)} characters long: at most {MAX_REASON} are kept.",
        )
    await _change(
        request,
        db,
        operator,
        planning,
        _checked_id(appointment_id),
        {"appointmentStatus": AppointmentStatus.CANCELLED.value},
        note=reason,
        seen=_version(fields),
    )
    return _done(appointment_id, "cancelled")


@router.get("/appointments/{appointment_id}/reschedule")
async def reschedule_form(
    request: Request, appointment_id: str, operator: EventsWriter, db: DatabaseDep
) -> Response:
    return await _reschedule_page(request, db, operator, _checked_id(appointment_id), "", "")


@router.post("/appointments/{appointment_id}/reschedule")
async def reschedule(
    request: Request,
    appointment_id: str,
    operator: EventsWriter,
    db: DatabaseDep,
    planning: PlanningDep,
) -> Response:
    """Move the appointment to a free slot, or to a time typed in (in the location's zone);
    it keeps its duration, and the calendar's availability is checked as the API checks it."""
    fields = await read_form(request, operator.csrf)
    appointment_id = _checked_id(appointment_id)
    start = (first(fields, "slot") or first(fields, "start")).strip()
    error = ""
    if not start:
        error = "Choose a free slot or enter a new start."
    elif len(start) > 40:
        error = "The new start must be a date and time like 2030-01-31T09:00."
    else:
        try:
            await _change(
                request,
                db,
                operator,
                planning,
                appointment_id,
                {"startTime": start},
                seen=_version(fields),
            )
        except BadRequest as exc:
            error = "; ".join(_worded(e.field, e.message) for e in exc.errors)
    if error:
        return await _reschedule_page(
            request, db, operator, appointment_id, first(fields, "start")[:40], error, 400
        )
    return _done(appointment_id, "rescheduled")


def _worded(field: str, message: str) -> str:
    names = {"startTime": "The new start", "endTime": "The new end"}
    return f"{names.get(field, field or 'The change')} {message}".strip()


async def _reschedule_page(
    request: Request,
    db: Database,
    operator: Operator,
    appointment_id: str,
    typed: str,
    error: str,
    status: int = 200,
) -> Response:
    appointment = await reads.get_appointment(db, operator.principal, appointment_id)
    where = zone(operator.location_zone)
    slots: list[datetime] = []
    if operator.principal.can(Scope.CALENDARS_READ):
        now = now_utc(request)
        days = await free_slots_by_day(
            db,
            operator.principal,
            appointment.calendar_id,
            Range(now, now + timedelta(days=SLOT_DAYS), where, ()),
            now,
        )
        slots = [datetime.fromisoformat(s) for d in days.values() for s in d["slots"]]
    return render(
        request,
        "reschedule.html",
        {
            "appointment": appointment,
            "shown_id": series.wire_id(appointment),
            "slots": slots[:MAX_SLOTS],
            "more_slots": len(slots) > MAX_SLOTS,
            "slot_days": SLOT_DAYS,
            "typed": typed,
            "error": error,
            "zone": where,
        },
        status=status,
        operator=operator,
    )


def who(event: AppointmentEvent) -> str:
    """Who made a change, in words."""
    if event.source == EventSource.CONSOLE:
        return f"in the console (token {event.actor})" if event.actor else "in the console"
    return words.change_source(event.source, event.channel)


def what(event: AppointmentEvent) -> str:
    """What an event changed, in words."""
    after = event.after or {}
    if event.kind == "status_changed":
        return f"Status changed to {after.get('appointmentStatus', '')}"
    if event.kind == "rescheduled":
        return f"Rescheduled to {after.get('startTime', '')}"
    return words.EVENT_KINDS.get(event.kind, event.kind)


def desk_context(request: Request, operator: Operator, events: Sequence[Any]) -> dict[str, Any]:
    """What the appointment page needs to show the desk's actions and the history."""
    return {
        "marks": MARKS,
        "history": events,
        "who": who,
        "what": what,
        "flash": DONE.get(request.query_params.get("done", ""), ""),
        "max_reason": MAX_REASON,
        "can_act": operator.principal.can(Scope.EVENTS_WRITE),
    }
