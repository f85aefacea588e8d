"""Appointments and their notification timeline (with its Resend button), outbox, inbox,
health."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import RedirectResponse, Response

from calnotify.appointments import lists, reads, series
from calnotify.auth.scopes import Scope
from calnotify.auth.sessions import Operator
from calnotify.calendars import service as calendars
from calnotify.console import charts, desk, words
from calnotify.console.deployment import provider_checks
from calnotify.console.web import (
    PAGE,
    PREFIX,
    ConsoleRoute,
    PageError,
    last_page,
    now_utc,
    page_number,
    read_form,
    render,
    signed_in,
)
from calnotify.contacts import service as contacts
from calnotify.deliveries import health as health_reads
from calnotify.deliveries import service as deliveries
from calnotify.deliveries.resend import RESENDABLE, resend
from calnotify.deliveries.wording import content_removed, explained, shown_error
from calnotify.deps import DatabaseDep, PlanningDep, ReadSessionDep, SessionDep
from calnotify.errors import Conflict
from calnotify.ids import parse_instance_id
from calnotify.inbox.service import list_inbox
from calnotify.replies.service import replies_to
from calnotify.timefmt import parse_instant, zone
from calnotify.users import service as users

router = APIRouter(route_class=ConsoleRoute)

Text = Annotated[str, Query(max_length=200)]


@router.get("/appointments")
async def appointments(
    request: Request,
    operator: Annotated[Operator, signed_in(Scope.EVENTS_READ)],
    session: SessionDep,
    q: Text = "",
    start: Annotated[str, Query(alias="from", max_length=40)] = "",
    end: Annotated[str, Query(alias="to", max_length=40)] = "",
    page: Annotated[str, Query(max_length=12)] = "1",
) -> Response:
    where = zone(operator.location_zone)
    errors: dict[str, str] = {}
    since = day_of(start, where, errors, "from")
    until = day_of(end, where, errors, "to", last=True)
    if since and until and until <= since:
        errors["to"] = "must be on or after the first day"
    number = page_number(page)
    rows: list[Any] = []
    total = 0
    if not errors:
        rows, total = await lists.search_appointments(
            session,
            operator.principal,
            text=q.strip(),
            start=since,
            end=until,
            page=number,
            size=PAGE,
        )
    return render(
        request,
        "appointments.html",
        {
            "rows": rows,
            "total": total,
            "q": q,
            "start": start,
            "end": end,
            "errors": errors,
            "page": number,
            "pages": last_page(total, PAGE, number, "appointments"),
            "zone": where,
            "wire_id": series.wire_id,
        },
        status=400 if errors else 200,
        operator=operator,
    )


def day_of(
    text: str, where: ZoneInfo, errors: dict[str, str], name: str, *, last: bool = False
) -> datetime | None:
    """The start of the day ``text`` names, in ``where`` (``last``: the end of that day,
    a calendar day later, 23 or 25 hours across a change of clocks); a problem is filed
    under ``name``."""
    if not text:
        return None
    moment = parse_instant(text.strip(), where)
    if moment is None:
        errors[name] = "must be a date like 2030-01-31"
        return None
    if last:
        wall = moment.astimezone(where).replace(tzinfo=None) + timedelta(days=1)
        moment = wall.replace(tzinfo=where).astimezone(UTC)
    return moment


@router.get("/appointments/{appointment_id}")
async def appointment_page(
    request: Request,
    appointment_id: str,
    operator: Annotated[Operator, signed_in(Scope.EVENTS_READ)],
    session: ReadSessionDep,
    db: DatabaseDep,
) -> Response:
    if len(appointment_id) > 48:
        raise PageError(404, "Not found", "Appointment not found")
    appointment = await reads.get_appointment(db, operator.principal, appointment_id)
    where = zone(operator.location_zone)
    shown_id = series.wire_id(appointment)
    contact = await contacts.find_contact(session, operator.principal, appointment.contact_id)
    calendar = await calendars.find_calendar(session, operator.principal, appointment.calendar_id)
    user = await users.find_user(session, operator.principal, appointment.assigned_user_id)
    master = None
    nearby: list[object] = []
    if appointment.master_id:
        master = await reads.get_appointment(db, operator.principal, appointment.master_id)
        around = appointment.original_start_at or appointment.start_at
        nearby = list(await lists.occurrences_around(session, master, around, 4))
    elif series.is_master(appointment):
        master = appointment
        nearby = list(await lists.occurrences_around(session, appointment, now_utc(request), 12))
    timeline_id = shown_id if parse_instance_id(shown_id) else appointment.id
    rows, attempts = await deliveries.timeline(session, operator.principal, timeline_id)
    replies = await replies_to(session, operator.principal, appointment.id)
    events = await lists.history(
        session, operator.principal.location_id, appointment.id, desk.HISTORY
    )
    return render(
        request,
        "appointment.html",
        {
            "appointment": appointment,
            "shown_id": shown_id,
            "contact": contact,
            "calendar": calendar,
            "user": user,
            "master": master,
            "nearby": nearby,
            "rows": rows,
            "attempts": attempts,
            "replies": replies,
            "zone": where,
            "words": words,
            "wire_id": series.wire_id,
            **_error_wording(operator.principal.operator),
            **desk.desk_context(request, operator, events),
        },
        operator=operator,
    )


def _error_wording(operator: bool) -> dict[str, Any]:
    """How the timeline words errors (the provider's details for an operator only), what a
    failed or skipped send means and what to do, for everyone, and removed content."""
    return {
        "content_removed": content_removed,
        "error_of": lambda d: shown_error(d.channel, d.last_error, operator=operator),
        "attempt_error_of": lambda d, a: shown_error(d.channel, a.error, operator=operator),
        "explain_of": lambda d: explained(d.status, d.reason, d.channel, d.last_error),
        "resendable": RESENDABLE,
    }


@router.post("/deliveries/{delivery_id}/resend")
async def resend_delivery(
    request: Request,
    delivery_id: str,
    operator: Annotated[Operator, signed_in(Scope.EVENTS_WRITE)],
    db: DatabaseDep,
    planning: PlanningDep,
) -> Response:
    """The timeline's Resend button: the API's resend, then back to the timeline."""
    await read_form(request, operator.csrf)
    try:
        new_id, due = await resend(db, operator.principal, delivery_id, now_utc(request))
    except Conflict as exc:
        raise PageError(409, "Not resent", exc.message) from exc
    planning.planned(due)
    async with db.session(write=False) as session:
        new = await deliveries.get_delivery(session, operator.principal, new_id)
    shown = new.instance_id or new.appointment_id
    return RedirectResponse(f"{PREFIX}/appointments/{shown}#delivery-{new.id}", status_code=303)


@router.get("/outbox")
async def outbox(
    request: Request,
    operator: Annotated[Operator, signed_in(Scope.EVENTS_READ)],
    session: SessionDep,
    page: Annotated[str, Query(max_length=12)] = "1",
    channel: Annotated[str, Query(max_length=16)] = "",
) -> Response:
    number = page_number(page)
    chosen = channel if channel in words.CHANNELS else ""
    filters: dict[str, str | None] = {"channel": chosen or None}
    rows, total = await deliveries.list_outbox(
        session,
        operator.principal,
        filters,
        PAGE,
        (number - 1) * PAGE,
        newest_first=True,
    )
    return render(
        request,
        "outbox.html",
        {
            "rows": rows,
            "total": total,
            "page": number,
            "pages": last_page(total, PAGE, number, "outbox messages"),
            "channel": chosen,
            "zone": zone(operator.location_zone),
            "words": words,
        },
        operator=operator,
    )


@router.get("/inbox")
async def inbox(
    request: Request,
    operator: Annotated[Operator, signed_in(Scope.EVENTS_READ, Scope.USERS_READ)],
    session: SessionDep,
    user: Annotated[str, Query(max_length=20)] = "",
    page: Annotated[str, Query(max_length=12)] = "1",
) -> Response:
    people = await users.list_users(
        session, operator.principal, operator.principal.location_id, by_name=True, limit=500
    )
    chosen = next((u for u in people if u.id == user), None)
    if user and chosen is None:
        raise PageError(404, "Not found", "User not found")
    if chosen is None and people:
        chosen = people[0]
    number = page_number(page)
    items: Sequence[Any] = []
    total = 0
    if chosen is not None:
        items, total = await list_inbox(
            session,
            operator.principal,
            chosen.id,
            unread=None,
            limit=PAGE,
            skip=(number - 1) * PAGE,
        )
    return render(
        request,
        "inbox.html",
        {
            "users": people,
            "chosen": chosen,
            "items": items,
            "total": total,
            "page": number,
            "pages": last_page(total, PAGE, number, "inbox items"),
            "zone": zone(operator.location_zone),
        },
        operator=operator,
    )


@router.get("/health")
async def health(
    request: Request,
    operator: Annotated[Operator, signed_in(Scope.EVENTS_READ)],
    session: SessionDep,
) -> Response:
    return await _health_page(request, operator, session)


@router.post("/health/checks")
async def health_checks(
    request: Request,
    operator: Annotated[Operator, signed_in(operators_only=True)],
    session: ReadSessionDep,
) -> Response:
    """Run the provider checks of ``calnotify check`` (operators only, at most once a
    minute: a result younger than that is shown again) and show them on the Health page."""
    await read_form(request, operator.csrf)
    # Read unit only: the network checks must never hold the write lock.
    await provider_checks(request).run(request.app.state.settings, now_utc(request))
    return await _health_page(request, operator, session)


async def _health_page(request: Request, operator: Operator, session: AsyncSession) -> Response:
    now = now_utc(request)
    where = zone(operator.location_zone)
    found = await health_reads.health(session, operator.principal, now)
    rates = await health_reads.confirmation_rates(session, operator.principal, now)
    # The minute alone: a zone's abbreviation may be any length ("GMT+3", "AEDT").
    labels = [m.astimezone(where).strftime("%H:%M") for m in found.minutes]
    series_by_channel = [
        (words.CHANNELS.get(c, c), values)  # type: ignore[call-overload]
        for c, values in sorted(found.per_channel.items())
    ]
    sends = charts.bar_chart(
        "sends-chart",
        "Sends per minute, last hour",
        "Messages sent each minute over the last hour, by channel.",
        labels,
        series_by_channel or [("Sent", [0] * len(labels))],
        tick_every=10,
    )
    lateness = charts.bar_chart(
        "lateness-chart",
        "Lateness of sends, last hour",
        "How long after its due time each message of the last hour was sent.",
        found.lateness_buckets,
        [("Messages", found.lateness_counts)],
    )
    return render(
        request,
        "health.html",
        {
            "health": found,
            "rates": rates,
            "confirmation_days": health_reads.CONFIRMATION_DAYS,
            "now": now,
            "zone": where,
            "sends_chart": sends,
            "lateness_chart": lateness,
            "labels": labels,
            "series": series_by_channel,
            "oldest_age": (now - found.oldest_due).total_seconds() if found.oldest_due else None,
            "checks": provider_checks(request) if operator.principal.operator else None,
            # The Messages page's filters behind the counts.
            "today": now.astimezone(where).date().isoformat(),
            "hour_ago": (now - timedelta(hours=1)).isoformat(timespec="seconds"),
        },
        operator=operator,
    )
