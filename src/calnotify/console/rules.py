"""Calendars and their notification rules: list, create, edit, deactivate, delete, preview."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import RedirectResponse, Response

from calnotify.appointments import lists
from calnotify.auth.scopes import Scope
from calnotify.auth.sessions import Operator
from calnotify.calendars.service import calendars_with_counts, get_calendar
from calnotify.console import words
from calnotify.console.forms import (
    RuleForm,
    empty_rule,
    parse_rule,
    rule_body,
    rule_from_fields,
    rule_from_row,
)
from calnotify.console.sender_warnings import allowed_of, rule_warnings, sender_warning
from calnotify.console.web import (
    PREFIX,
    ConsoleRoute,
    first,
    now_utc,
    read_form,
    render,
    signed_in,
)
from calnotify.db.tx import Reader
from calnotify.deps import DatabaseDep, PlanningDep, ReadSessionDep
from calnotify.errors import BadRequest
from calnotify.notifications import impact, service
from calnotify.notifications.preview import PreviewOptions, preview_plan
from calnotify.notifications.schemas import (
    NotificationCreate,
    NotificationUpdate,
    PreviewRequest,
)
from calnotify.templates.service import list_templates
from calnotify.users.service import list_users

if TYPE_CHECKING:
    from calnotify.models import Calendar

router = APIRouter(route_class=ConsoleRoute)

# What the page says after a change (``?done=``): fixed wording, never text from the URL.
DONE = {
    "created": "Rule created.",
    "saved": "Rule saved.",
    "activated": "Rule activated.",
    "deactivated": "Rule deactivated.",
    "deleted": "Rule deleted.",
}


@router.get("/calendars")
async def calendars(
    request: Request,
    operator: Annotated[Operator, signed_in(Scope.CALENDARS_READ)],
    session: ReadSessionDep,
) -> Response:
    rows = await calendars_with_counts(session, operator.principal, 500)
    return render(request, "calendars.html", {"rows": rows}, operator=operator)


@router.get("/calendars/{calendar_id}")
async def calendar_page(
    request: Request,
    calendar_id: str,
    operator: Annotated[Operator, signed_in(Scope.CALENDARS_READ)],
    session: ReadSessionDep,
    db: DatabaseDep,
) -> Response:
    calendar = await get_calendar(session, operator.principal, calendar_id)
    can = operator.principal.can
    rules = (
        await service.list_notifications(db, operator.principal, calendar.id, limit=500)
        if can(Scope.EVENTS_READ)
        else None
    )
    templates = await _templates(session, operator)
    allowed = await allowed_of(db, calendar.location_id)
    return render(
        request,
        "calendar.html",
        {
            "calendar": calendar,
            "rules": rules,
            "sender_warnings": rule_warnings(calendar.location_id, list(rules or []), allowed),
            "words": words,
            "template_names": {t.id: t.name for t in templates},
            "flash": DONE.get(request.query_params.get("done", ""), ""),
        },
        operator=operator,
    )


@router.get("/calendars/{calendar_id}/rules/new")
async def new_rule(
    request: Request,
    calendar_id: str,
    operator: Annotated[Operator, signed_in(Scope.EVENTS_WRITE)],
    session: ReadSessionDep,
    db: DatabaseDep,
) -> Response:
    calendar = await get_calendar(session, operator.principal, calendar_id)
    return await _form_page(request, session, db, operator, calendar, None, empty_rule())


@router.post("/calendars/{calendar_id}/rules")
async def create_rule(
    request: Request,
    calendar_id: str,
    operator: Annotated[Operator, signed_in(Scope.EVENTS_WRITE)],
    session: ReadSessionDep,
    db: DatabaseDep,
    planning: PlanningDep,
) -> Response:
    fields = await read_form(request, operator.csrf)
    calendar = await get_calendar(session, operator.principal, calendar_id)
    form = rule_from_fields(fields)
    item = parse_rule(form, NotificationCreate)
    if item is not None and not form.failed:
        try:
            _, due = await service.create_many(
                db, operator.principal, calendar.id, [item], now_utc(request)
            )
            planning.planned(due)
        except BadRequest as exc:
            form.add(exc.errors)
    if form.failed:
        return await _form_page(request, session, db, operator, calendar, None, form, status=400)
    return _back(calendar, "created")


@router.get("/calendars/{calendar_id}/rules/{rule_id}/edit")
async def edit_rule(
    request: Request,
    calendar_id: str,
    rule_id: str,
    operator: Annotated[Operator, signed_in(Scope.EVENTS_WRITE)],
    session: ReadSessionDep,
    db: DatabaseDep,
) -> Response:
    calendar = await get_calendar(session, operator.principal, calendar_id)
    row = await service.get_notification(db, operator.principal, calendar.id, rule_id)
    return await _form_page(request, session, db, operator, calendar, row, rule_from_row(row))


@router.post("/calendars/{calendar_id}/rules/{rule_id}")
async def update_rule(
    request: Request,
    calendar_id: str,
    rule_id: str,
    operator: Annotated[Operator, signed_in(Scope.EVENTS_WRITE)],
    session: ReadSessionDep,
    db: DatabaseDep,
    planning: PlanningDep,
) -> Response:
    fields = await read_form(request, operator.csrf)
    calendar = await get_calendar(session, operator.principal, calendar_id)
    row = await service.get_notification(db, operator.principal, calendar.id, rule_id)
    form = rule_from_fields(fields)
    changes = parse_rule(form, NotificationUpdate)
    if changes is not None and not form.failed:
        try:
            planning.planned(
                await service.update_notification(
                    db, operator.principal, calendar.id, row.id, changes, now_utc(request)
                )
            )
        except BadRequest as exc:
            form.add(exc.errors)
    if form.failed:
        row = await service.get_notification(db, operator.principal, calendar.id, rule_id)
        return await _form_page(request, session, db, operator, calendar, row, form, status=400)
    return _back(calendar, "saved")


@router.post("/calendars/{calendar_id}/rules/{rule_id}/active")
async def set_active(
    request: Request,
    calendar_id: str,
    rule_id: str,
    operator: Annotated[Operator, signed_in(Scope.EVENTS_WRITE)],
    session: ReadSessionDep,
    db: DatabaseDep,
    planning: PlanningDep,
) -> Response:
    fields = await read_form(request, operator.csrf)
    calendar = await get_calendar(session, operator.principal, calendar_id)
    active = first(fields, "active") == "true"
    planning.planned(
        await service.update_notification(
            db,
            operator.principal,
            calendar.id,
            rule_id,
            NotificationUpdate.model_validate({"isActive": active}),
            now_utc(request),
        )
    )
    return _back(calendar, "activated" if active else "deactivated")


@router.post("/calendars/{calendar_id}/rules/{rule_id}/delete")
async def delete_rule(
    request: Request,
    calendar_id: str,
    rule_id: str,
    operator: Annotated[Operator, signed_in(Scope.EVENTS_WRITE)],
    session: ReadSessionDep,
    db: DatabaseDep,
    planning: PlanningDep,
) -> Response:
    await read_form(request, operator.csrf)
    calendar = await get_calendar(session, operator.principal, calendar_id)
    planning.planned(
        await service.delete_notification(
            db, operator.principal, calendar.id, rule_id, now_utc(request)
        )
    )
    return _back(calendar, "deleted")


@router.post("/calendars/{calendar_id}/preview")
async def preview(
    request: Request,
    calendar_id: str,
    operator: Annotated[Operator, signed_in(Scope.EVENTS_READ)],
    reader: ReadSessionDep,
    db: DatabaseDep,
) -> Response:
    """The rule form's preview (an htmx partial): nothing is stored, nothing is sent."""
    fields = await read_form(request, operator.csrf)
    calendar = await get_calendar(reader, operator.principal, calendar_id)
    form = rule_from_fields(fields)
    body = rule_body(form)
    result, problems = await run_preview(
        db, operator, calendar, body, first(fields, "previewAppointment"), request
    )
    return render(
        request,
        "_preview.html",
        {
            "result": result,
            # A schedule offset that is no number is told, not silently left out.
            "problems": [f"Schedule: {m}" for m in form.errors.get("schedule", [])]
            + problems
            + form.general,
            "words": words,
        },
        operator=operator,
    )


@router.post("/calendars/{calendar_id}/impact")
async def new_rule_impact(
    request: Request,
    calendar_id: str,
    operator: Annotated[Operator, signed_in(Scope.EVENTS_READ)],
    reader: ReadSessionDep,
    db: DatabaseDep,
) -> Response:
    """The rule form's impact (an htmx partial) for a new rule: nothing is stored."""
    return await _impact(request, calendar_id, None, operator, reader, db)


@router.post("/calendars/{calendar_id}/rules/{rule_id}/impact")
async def rule_impact(
    request: Request,
    calendar_id: str,
    rule_id: str,
    operator: Annotated[Operator, signed_in(Scope.EVENTS_READ)],
    reader: ReadSessionDep,
    db: DatabaseDep,
) -> Response:
    """The rule form's impact (an htmx partial) for an edit: nothing is stored."""
    return await _impact(request, calendar_id, rule_id, operator, reader, db)


async def _impact(
    request: Request,
    calendar_id: str,
    rule_id: str | None,
    operator: Operator,
    reader: AsyncSession,
    db: Reader,
) -> Response:
    """What saving the form would do to pending sends: the API's impact, for the form."""
    fields = await read_form(request, operator.csrf)
    calendar = await get_calendar(reader, operator.principal, calendar_id)
    form = rule_from_fields(fields)
    now = now_utc(request)
    found: impact.Impact | None = None
    try:
        if rule_id is None:
            item = parse_rule(form, NotificationCreate)
            if item is not None:
                found = await impact.create_impact(db, operator.principal, calendar.id, [item], now)
        else:
            changes = parse_rule(form, NotificationUpdate)
            if changes is not None:
                found = await impact.update_impact(
                    db, operator.principal, calendar.id, rule_id, changes, now
                )
    except BadRequest as exc:
        form.add(exc.errors)
    problems = [f"{words.FIELDS.get(n, n)}: {e}" for n, errs in form.errors.items() for e in errs]
    result = None if form.failed or found is None else impact.impact_out(operator.principal, found)
    return render(
        request,
        "_impact.html",
        {"result": result, "problems": problems + form.general},
        operator=operator,
    )


async def run_preview(
    reader: Reader,
    operator: Operator,
    calendar: Calendar,
    rule: dict[str, Any],
    appointment_id: str,
    request: Request,
) -> tuple[Any, list[str]]:
    """What ``rule`` would send for a sample appointment (tomorrow) or a chosen real one."""
    now = now_utc(request)
    body: dict[str, Any] = {"notifications": [rule]}
    if appointment_id:
        body["appointmentId"] = appointment_id
    else:
        start = (now + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
        body["startTime"] = start.isoformat()
        body["endTime"] = (start + timedelta(minutes=30)).isoformat()
    try:
        wanted = PreviewRequest.model_validate(body)
        result = await preview_plan(
            reader, operator.principal, calendar.id, wanted, now, PreviewOptions.of(request.app)
        )
    except BadRequest as exc:
        return None, [str(e).removeprefix("notifications[0].") for e in exc.errors]
    except ValueError as exc:
        return None, [str(exc)]
    return result, []


async def _form_page(
    request: Request,
    session: AsyncSession,
    reader: Reader,
    operator: Operator,
    calendar: Calendar,
    row: Any,
    form: RuleForm,
    *,
    status: int = 200,
) -> Response:
    can = operator.principal.can
    users = (
        await list_users(
            session, operator.principal, operator.principal.location_id, by_name=True, limit=500
        )
        if can(Scope.USERS_READ)
        else []
    )
    templates = await _templates(session, operator)
    values = form.values
    warning = sender_warning(
        calendar.location_id,
        str(values.get("channel", "")),
        str(values.get("fromAddress", "")),
        str(values.get("fromNumber", "")),
        await allowed_of(reader, calendar.location_id),
    )
    upcoming = await lists.upcoming_in(
        session, operator.principal, calendar.id, now_utc(request), 20
    )
    return render(
        request,
        "rule_form.html",
        {
            "calendar": calendar,
            "row": row,
            "form": form,
            "users": users,
            "templates": templates,
            "upcoming": upcoming,
            "sender_warning": warning,
            "words": words,
            "action": (
                f"{PREFIX}/calendars/{calendar.id}/rules/{row.id}"
                if row
                else f"{PREFIX}/calendars/{calendar.id}/rules"
            ),
        },
        status=status,
        operator=operator,
    )


async def _templates(session: AsyncSession, operator: Operator) -> list[Any]:
    """The location's templates by name, for a token that may read them."""
    if not operator.principal.can(Scope.TEMPLATES_READ):
        return []
    principal = operator.principal
    rows, _ = await list_templates(
        session,
        principal,
        principal.location_id,
        template_type=None,
        deleted=False,
        limit=500,
        skip=0,
        by_name=True,
    )
    return list(rows)


def _back(calendar: Calendar, done: str) -> Response:
    return RedirectResponse(f"{PREFIX}/calendars/{calendar.id}?done={done}", status_code=303)
