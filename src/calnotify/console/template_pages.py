"""Stored message templates: list, create, edit, with a preview of the rendered message."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import RedirectResponse, Response

from calnotify.auth.scopes import Scope
from calnotify.auth.sessions import Operator
from calnotify.calendars.service import first_calendar
from calnotify.console import words
from calnotify.console.forms import RuleForm, validation_problems
from calnotify.console.rules import run_preview
from calnotify.console.web import (
    PREFIX,
    ConsoleRoute,
    first,
    last_page,
    page_number,
    read_form,
    render,
    signed_in,
)
from calnotify.deps import DatabaseDep, ReadSessionDep
from calnotify.errors import BadRequest
from calnotify.templates import service
from calnotify.templates.schemas import TemplateFieldsIn

router = APIRouter(route_class=ConsoleRoute)
PAGE = 50
DONE = {"created": "Template created.", "saved": "Template saved."}
TYPES = {"email": "Email", "sms": "SMS", "whatsapp": "WhatsApp"}


@router.get("/templates")
async def templates(
    request: Request,
    operator: Annotated[Operator, signed_in(Scope.TEMPLATES_READ)],
    session: ReadSessionDep,
    page: str = "1",
) -> Response:
    number = page_number(page[:12])
    rows, total = await service.list_templates(
        session,
        operator.principal,
        operator.principal.location_id,
        template_type=None,
        deleted=False,
        limit=PAGE,
        skip=(number - 1) * PAGE,
    )
    return render(
        request,
        "templates.html",
        {
            "rows": rows,
            "total": total,
            "page": number,
            "pages": last_page(total, PAGE, number, "templates"),
            "types": TYPES,
            "flash": DONE.get(request.query_params.get("done", ""), ""),
        },
        operator=operator,
    )


@router.get("/templates/new")
async def new_template(
    request: Request,
    operator: Annotated[Operator, signed_in(Scope.TEMPLATES_WRITE)],
    session: ReadSessionDep,
) -> Response:
    form = RuleForm(values={"name": "", "type": "email", "subject": "", "html": "", "body": ""})
    return await _form(request, operator, None, form)


@router.post("/templates")
async def create_template(
    request: Request,
    operator: Annotated[Operator, signed_in(Scope.TEMPLATES_WRITE)],
    db: DatabaseDep,
) -> Response:
    fields = await read_form(request, operator.csrf)
    form = _typed(fields)
    body = _body(form)
    if body is not None:
        try:
            await service.create_template(
                db, operator.principal, operator.principal.location_id, body
            )
        except BadRequest as exc:
            form.add(exc.errors)
    if form.failed:
        return await _form(request, operator, None, form, status=400)
    return RedirectResponse(f"{PREFIX}/templates?done=created", status_code=303)


@router.get("/templates/{template_id}")
async def edit_template(
    request: Request,
    template_id: str,
    operator: Annotated[Operator, signed_in(Scope.TEMPLATES_READ)],
    session: ReadSessionDep,
    db: DatabaseDep,
) -> Response:
    row = await service.get_template(
        db, operator.principal, operator.principal.location_id, template_id
    )
    form = RuleForm(
        values={
            "name": row.name,
            "type": row.type,
            "subject": row.subject,
            "html": row.html,
            "body": row.body,
        }
    )
    return await _form(request, operator, row, form)


@router.post("/templates/{template_id}")
async def update_template(
    request: Request,
    template_id: str,
    operator: Annotated[Operator, signed_in(Scope.TEMPLATES_WRITE)],
    session: ReadSessionDep,
    db: DatabaseDep,
) -> Response:
    fields = await read_form(request, operator.csrf)
    form = _typed(fields)
    body = _body(form)
    if body is not None:
        try:
            await service.update_template(
                db, operator.principal, operator.principal.location_id, template_id, body
            )
        except BadRequest as exc:
            form.add(exc.errors)
    if form.failed:
        row = await service.get_template(
            db, operator.principal, operator.principal.location_id, template_id
        )
        return await _form(request, operator, row, form, status=400)
    return RedirectResponse(f"{PREFIX}/templates?done=saved", status_code=303)


@router.post("/templates-preview")
async def preview(
    request: Request,
    operator: Annotated[Operator, signed_in(Scope.TEMPLATES_READ)],
    reader: ReadSessionDep,
    db: DatabaseDep,
) -> Response:
    """The template form's preview: the template as a booked email or text to a sample."""
    fields = await read_form(request, operator.csrf)
    form = _typed(fields)
    calendar = await first_calendar(reader, operator.principal)
    result, problems = None, ["Create a calendar to preview templates."]
    if calendar is not None:
        kind = form.values["type"] if form.values["type"] in TYPES else "email"
        rule = {
            "channel": kind,
            "receiverType": "contact",
            "notificationType": "booked",
            "subject": form.values["subject"],
            "body": form.values["html"] if kind == "email" else form.values["body"],
        }
        result, problems = await run_preview(db, operator, calendar, rule, "", request)
    return render(
        request,
        "_preview.html",
        {"result": result, "problems": problems, "words": words},
        operator=operator,
    )


async def _form(
    request: Request,
    operator: Operator,
    row: Any,
    form: RuleForm,
    *,
    status: int = 200,
) -> Response:
    return render(
        request,
        "template_form.html",
        {
            "row": row,
            "form": form,
            "types": TYPES,
            "words": words,
            "action": f"{PREFIX}/templates/{row.id}" if row else f"{PREFIX}/templates",
        },
        status=status,
        operator=operator,
    )


def _typed(fields: Mapping[str, list[str]]) -> RuleForm:
    return RuleForm(
        values={name: first(fields, name) for name in ("name", "type", "subject", "html", "body")}
    )


def _body(form: RuleForm) -> TemplateFieldsIn | None:
    v = form.values
    content: dict[str, Any] = {"subject": v["subject"], "html": v["html"]}
    if v["type"] != "email":
        content = {"body": v["body"]}
    try:
        return TemplateFieldsIn.model_validate(
            {"name": v["name"], "type": v["type"] or None, "template": content}
        )
    except ValidationError as exc:
        form.add(validation_problems(exc))
        return None
