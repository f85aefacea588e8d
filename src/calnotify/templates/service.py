"""Stored templates of a location (HighLevel's ``/locations/{locationId}/templates``).

A template is stored normalised for its type, because the dispatcher reads a template as
``(subject, html or body)``: an email template keeps ``subject`` and ``html`` (``body``
empty), an sms or whatsapp template keeps ``body`` (``subject`` and ``html`` empty).

Notification rules name templates by ``templateId`` and are checked against the
template's type when they are saved, so a template that a rule (not deleted) still uses
can neither be deleted nor change its type. Writes are one transaction of compiled
statements each; reads of pages stay with the ORM.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.auth.deps import ensure_location
from calnotify.auth.tokens import Principal
from calnotify.db.base import utcnow
from calnotify.db.engine import Database
from calnotify.db.statements import Statement, by_id, table
from calnotify.db.tx import Reader
from calnotify.errors import BadRequest, FieldError, NotFound
from calnotify.ids import looks_like_id, new_id
from calnotify.models import Notification, Template
from calnotify.notifications.rules import MAX_BODY_BYTES, MAX_SUBJECT_CHARS
from calnotify.templates.liquid import template_errors
from calnotify.templates.schemas import (
    EmailTemplateContent,
    TemplateFieldsIn,
    TemplateOut,
    TemplateType,
    TextTemplateContent,
)

MAX_NAME_CHARS = 255


@dataclass(frozen=True, slots=True)
class TemplateDraft:
    """A template as it would be stored."""

    name: str
    type: TemplateType
    subject: str = ""
    html: str = ""
    body: str = ""

    @classmethod
    def from_row(cls, row: Any) -> TemplateDraft:
        return cls(
            name=row.name,
            type=TemplateType(row.type),
            subject=row.subject,
            html=row.html,
            body=row.body,
        )

    def normalised(self) -> TemplateDraft:
        if self.type is TemplateType.EMAIL:
            return replace(self, body="")
        return replace(self, subject="", html="")


async def get_template(
    reader: Reader, principal: Principal, location_id: str, template_id: str
) -> Any:
    """A template of the token's location that is not deleted (its columns), else 404."""
    ensure_location(principal, location_id)
    return await _template(reader, principal.location_id, template_id, _ONE)


async def _template(reader: Reader, location_id: str, template_id: str, read: Statement) -> Any:
    if not looks_like_id(template_id):
        raise NotFound("Template not found")
    [found] = await reader.fetch((read, {"id": template_id, "location_id": location_id}))
    if not found:
        raise NotFound("Template not found")
    return found[0]


async def list_templates(
    session: AsyncSession,
    principal: Principal,
    location_id: str,
    *,
    template_type: TemplateType | None,
    deleted: bool,
    limit: int,
    skip: int,
    by_name: bool = False,
) -> tuple[Sequence[Template], int]:
    """One page of the location's templates in creation order (``by_name``: by name), and
    how many there are."""
    ensure_location(principal, location_id)
    conditions = [Template.location_id == principal.location_id, Template.deleted.is_(deleted)]
    if template_type is not None:
        conditions.append(Template.type == template_type.value)
    total = await session.scalar(select(func.count(Template.id)).where(*conditions))
    rows = await session.scalars(
        select(Template)
        .where(*conditions)
        .order_by(*((Template.name,) if by_name else (Template.date_added,)), Template.id)
        .limit(limit)
        .offset(skip)
    )
    return rows.all(), int(total or 0)


async def create_template(
    db: Database, principal: Principal, location_id: str, body: TemplateFieldsIn
) -> Any:
    ensure_location(principal, location_id)
    errors: list[FieldError] = []
    if body.name is None:
        errors.append(FieldError("name", "is required"))
    if body.type is None:
        errors.append(FieldError("type", "is required"))
    draft = _merged(None, body, body.type or TemplateType.EMAIL)
    # Without a type only the name can be checked; a missing name is reported once.
    problems = _draft_problems(draft, content=body.type is not None)
    errors.extend(p for p in problems if not (p.field == "name" and body.name is None))
    if errors:
        raise BadRequest(errors)
    async with db.transaction() as tx:
        [[newest]] = await tx.fetch((_NEWEST, {"location_id": principal.location_id}))
        now = _creation_time(newest[0])
        values = {
            "id": new_id(),
            "location_id": principal.location_id,
            "name": draft.name,
            "type": draft.type.value,
            "subject": draft.subject,
            "html": draft.html,
            "body": draft.body,
            "deleted": False,
            "date_added": now,
            "date_updated": now,
        }
        tx.write(_INSERT, values)
    return _ROW(**values)


async def update_template(
    db: Database,
    principal: Principal,
    location_id: str,
    template_id: str,
    body: TemplateFieldsIn,
) -> Any:
    """Partial update; the merged template must pass the same rules as a create."""
    ensure_location(principal, location_id)
    async with db.transaction() as tx:
        # Locked (PostgreSQL) against rules that start using it meanwhile.
        row = await _template(tx, principal.location_id, template_id, _ONE_LOCKED)
        current = TemplateDraft.from_row(row)
        draft = _merged(current, body, body.type or current.type)
        errors = _draft_problems(draft)
        if draft.type is not current.type:
            in_use = await _notifications_using(tx, row)
            if in_use:
                errors.insert(
                    0,
                    FieldError(
                        "type",
                        f"cannot change from {current.type.value} to {draft.type.value} "
                        f"while {_count(in_use)} {'uses' if in_use == 1 else 'use'} the template",
                    ),
                )
        if errors:
            raise BadRequest(errors)
        if draft == current:
            return row
        row = row._replace(
            name=draft.name,
            type=draft.type.value,
            subject=draft.subject,
            html=draft.html,
            body=draft.body,
            date_updated=max(utcnow(), row.date_added),
        )
        tx.write(_UPDATE, by_id(row._asdict()))
    return row


async def delete_template(
    db: Database, principal: Principal, location_id: str, template_id: str
) -> None:
    """Soft delete, refused while a notification rule (not deleted) uses the template."""
    ensure_location(principal, location_id)
    async with db.transaction() as tx:
        row = await _template(tx, principal.location_id, template_id, _ONE_LOCKED)
        in_use = await _notifications_using(tx, row)
        if in_use:
            raise BadRequest(
                [
                    FieldError(
                        "templateId",
                        f"is used by {_count(in_use)}; delete "
                        + ("it or change its" if in_use == 1 else "them or change their")
                        + " templateId before deleting the template",
                    )
                ]
            )
        row = row._replace(deleted=True, date_updated=max(utcnow(), row.date_added))
        tx.write(_UPDATE, by_id(row._asdict()))


def to_out(row: Any) -> TemplateOut:
    content: EmailTemplateContent | TextTemplateContent
    if row.type == TemplateType.EMAIL.value:
        content = EmailTemplateContent(subject=row.subject, html=row.html)
    else:
        content = TextTemplateContent(body=row.body)
    return TemplateOut(
        id=row.id,
        locationId=row.location_id,
        name=row.name,
        type=TemplateType(row.type),
        template=content,
        dateAdded=row.date_added,
        dateUpdated=row.date_updated,
    )


def _merged(
    current: TemplateDraft | None, body: TemplateFieldsIn, template_type: TemplateType
) -> TemplateDraft:
    """``current`` with the fields ``body`` gives, as a template of ``template_type``."""
    base = current or TemplateDraft(name="", type=template_type)
    content = body.template
    return TemplateDraft(
        name=body.name.strip() if body.name is not None else base.name,
        type=template_type,
        subject=_pick(content.subject if content else None, base.subject),
        html=_pick(content.html if content else None, base.html),
        body=_pick(content.body if content else None, base.body),
    ).normalised()


def _pick(given: str | None, stored: str) -> str:
    return stored if given is None else given


def _draft_problems(draft: TemplateDraft, *, content: bool = True) -> list[FieldError]:
    """Everything wrong with ``draft`` (with ``content=False``: only its name)."""
    errors: list[FieldError] = []
    if not draft.name or len(draft.name) > MAX_NAME_CHARS:
        errors.append(FieldError("name", f"must be 1 to {MAX_NAME_CHARS} characters"))
    if not content:
        return errors
    if draft.type is TemplateType.EMAIL:
        if len(draft.subject) > MAX_SUBJECT_CHARS:
            errors.append(
                FieldError("template.subject", f"must be at most {MAX_SUBJECT_CHARS} characters")
            )
        if "\r" in draft.subject or "\n" in draft.subject:
            errors.append(FieldError("template.subject", "must not contain line breaks"))
        errors.extend(template_errors("template.subject", draft.subject))
        errors.extend(_long_text_problems("template.html", draft.html, "an email"))
    else:
        errors.extend(_long_text_problems("template.body", draft.body, f"a {draft.type.value}"))
    return errors


def _long_text_problems(field: str, source: str, kind: str) -> list[FieldError]:
    if not source.strip():
        return [FieldError(field, f"is required for {kind} template")]
    if len(source.encode("utf-8")) > MAX_BODY_BYTES:
        return [FieldError(field, f"must be at most {MAX_BODY_BYTES} bytes")]
    return template_errors(field, source)


async def _notifications_using(reader: Reader, row: Any) -> int:
    """How many notification rules of the location (not deleted) name the template."""
    [[found]] = await reader.fetch((_USING, {"id": row.id, "location_id": row.location_id}))
    return int(found[0] or 0)


def _count(n: int) -> str:
    return f"{n} notification" if n == 1 else f"{n} notifications"


def _creation_time(newest: datetime | None) -> datetime:
    """Now, but after the location's newest template, so creation order is listing order.

    Timestamps have millisecond precision; two templates created in the same millisecond
    would otherwise be listed in id order.
    """
    now = utcnow()
    if newest is not None and newest >= now:
        now = newest + timedelta(milliseconds=1)
    return now


_T = Template.__table__.c
_ROW_COLUMNS = [c.key for c in Template.__table__.c]
_ROW = namedtuple("_ROW", _ROW_COLUMNS)  # type: ignore[misc]


def _one(*, lock: bool) -> Statement:
    query = select(*Template.__table__.c).where(
        _T.id == bindparam("id"), _T.location_id == bindparam("location_id"), _T.deleted.is_(False)
    )
    return Statement(query.with_for_update() if lock else query)


_ONE = _one(lock=False)
_ONE_LOCKED = _one(lock=True)
_NEWEST = Statement(
    select(func.max(_T.date_added)).where(_T.location_id == bindparam("location_id"))
)
_INSERT = Statement(insert(table(Template)))
_UPDATE = Statement(
    update(table(Template))
    .where(_T.id == bindparam("b_id"))
    .values({name: bindparam(name) for name in _ROW_COLUMNS if name != "id"})
)
_N = Notification.__table__.c
_USING = Statement(
    select(func.count(_N.id)).where(
        _N.location_id == bindparam("location_id"),
        _N.template_id == bindparam("id"),
        _N.deleted.is_(False),
    )
)
