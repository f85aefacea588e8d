"""The five Calendar Notifications operations (semantics §2).

Services never commit: the request's unit of work does.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.auth.tokens import Principal
from calnotify.calendars.service import CALENDAR_IN_LOCATION, get_calendar
from calnotify.db.base import utcnow
from calnotify.db.engine import Database
from calnotify.db.statements import Statement
from calnotify.db.tx import Changed
from calnotify.deps import WriteUnits
from calnotify.errors import BadRequest, FieldError, NotFound
from calnotify.ids import looks_like_id
from calnotify.models import Notification
from calnotify.notifications import repository
from calnotify.notifications.rules import (
    DRAFT_FIELDS,
    SUB_ACCOUNT_ADMIN,
    TEMPLATE_TYPE_BY_CHANNEL,
    NotificationDraft,
    draft_problems,
    schedule_entries,
)
from calnotify.notifications.schemas import (
    NotificationCreate,
    NotificationFieldsIn,
    NotificationUpdate,
)
from calnotify.planning.jobs import plan_rule_change
from calnotify.planning.planner import SCHEDULED_TYPES


async def create_many(
    units: WriteUnits,
    principal: Principal,
    calendar_id: str,
    items: Sequence[NotificationCreate],
) -> list[Any]:
    """Create every rule of the array, or none of them.

    Active reminders and follow-ups are planned over the calendar in the same transaction
    (a write unit of work); any other rule plans nothing and is written in one trip
    (:meth:`~calnotify.db.engine.Database.transaction`).
    """
    drafts = [draft_of(item) for item in items]
    if any(d.is_active and d.notification_type in SCHEDULED_TYPES for d in drafts):
        async with units.session() as session:
            return await create_in_session(
                session, principal, calendar_id, items, units.clock.now()
            )
    prefixes = [f"[{i}]." for i in range(len(drafts))]
    return await _create_unplanned(units.db, principal, calendar_id, drafts, prefixes)


async def create_in_session(
    session: AsyncSession,
    principal: Principal,
    calendar_id: str,
    items: Sequence[NotificationCreate],
    now: datetime,
) -> list[Notification]:
    """:func:`create_many` in a write unit of work the caller holds."""
    calendar = await get_calendar(session, principal, calendar_id)
    drafts = [draft_of(item) for item in items]
    prefixes = [f"[{i}]." for i in range(len(drafts))]
    await _validate(session, principal, drafts, prefixes)

    stamp = utcnow()
    rows = [
        Notification(
            location_id=calendar.location_id,
            calendar_id=calendar.id,
            batch_index=i,
            date_added=stamp,
            date_updated=stamp,
            **draft.as_columns(),
        )
        for i, draft in enumerate(drafts)
    ]
    session.add_all(rows)
    await session.flush()
    for row in rows:
        if row.is_active and row.notification_type in SCHEDULED_TYPES:
            # A new rule has no deliveries yet; only reminders and follow-ups plan ahead.
            await plan_rule_change(session, row, now, new=True)
    return rows


async def _create_unplanned(
    db: Database,
    principal: Principal,
    calendar_id: str,
    drafts: Sequence[NotificationDraft],
    prefixes: Sequence[str],
) -> list[Any]:
    """Rules that plan nothing: what they depend on (their calendar, users and templates)
    is read outside the write lock, then written in one trip that checks it still holds;
    read again inside the transaction in the rare case it changed in between."""
    if not looks_like_id(calendar_id):
        raise NotFound("Calendar not found")
    # What needs no database (templates parsed, among others) before anything is read.
    problems = [e for d, p in zip(drafts, prefixes, strict=True) for e in draft_problems(d, p)]
    location_id = principal.location_id
    users, templates = _lookups(drafts)
    reads: list[tuple[Statement, dict[str, Any]]] = [
        (CALENDAR_IN_LOCATION, {"calendar_id": calendar_id, "location_id": location_id}),
        *[(repository.USER_IN_LOCATION, {"user_id": u, "location_id": location_id}) for u in users],
        *[
            (repository.TEMPLATE_IN_LOCATION, {"template_id": t, "location_id": location_id})
            for t in templates
        ],
    ]

    def new_rows(found: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
        if not found[0]:
            raise NotFound("Calendar not found")
        known_users = {u for u, rows in zip(users, found[1:], strict=False) if rows}
        known_templates = {r[0].id: r[0].type for r in found[1 + len(users) :] if r}
        errors = problems + _lookup_errors(drafts, prefixes, known_users, known_templates)
        if errors:
            raise BadRequest(errors)
        stamp = utcnow()
        return [
            repository.new_rule(
                {
                    "location_id": location_id,
                    "calendar_id": calendar_id,
                    "batch_index": i,
                    "date_added": stamp,
                    "date_updated": stamp,
                    **draft.as_columns(),
                }
            )
            for i, draft in enumerate(drafts)
        ]

    found = await db.fetch(*reads)
    rows = new_rows(found)
    try:
        async with db.transaction() as tx:
            for read, seen in zip(reads, found, strict=True):
                await tx.expect(read, seen)
            tx.write_many(repository.INSERT, rows)
    except Changed:
        async with db.transaction() as tx:
            rows = new_rows(await tx.fetch(*reads))
            tx.write_many(repository.INSERT, rows)
    return [repository.RuleRow(**row) for row in rows]


async def list_notifications(
    session: AsyncSession,
    principal: Principal,
    calendar_id: str,
    *,
    is_active: bool | None,
    deleted: bool | None,
    limit: int,
    skip: int,
) -> Sequence[Notification]:
    calendar = await get_calendar(session, principal, calendar_id)
    return await repository.list_for_calendar(
        session, calendar.id, is_active=is_active, deleted=bool(deleted), limit=limit, skip=skip
    )


async def list_notification_columns(
    db: Database,
    principal: Principal,
    calendar_id: str,
    *,
    is_active: bool | None,
    deleted: bool | None,
    limit: int,
    skip: int,
) -> list[Any]:
    """:func:`list_notifications` as column rows, for an answer: the calendar check and the
    page read together outside any unit of work, with no ORM entity built."""
    if not looks_like_id(calendar_id):
        raise NotFound("Calendar not found")
    page = {"calendar_id": calendar_id, "deleted": bool(deleted), "limit": limit, "skip": skip}
    if is_active is not None:
        page["is_active"] = is_active
    calendar, rows = await db.fetch(
        (CALENDAR_IN_LOCATION, {"calendar_id": calendar_id, "location_id": principal.location_id}),
        (repository.PAGE if is_active is None else repository.PAGE_BY_ACTIVE, page),
    )
    if not calendar:
        raise NotFound("Calendar not found")
    return rows


async def get_notification_columns(
    db: Database, principal: Principal, calendar_id: str, notification_id: str
) -> Any:
    """:func:`get_notification` as a column row, read the same way."""
    if not looks_like_id(calendar_id):
        raise NotFound("Calendar not found")
    reads: list[tuple[Statement, dict[str, Any]]] = [
        (CALENDAR_IN_LOCATION, {"calendar_id": calendar_id, "location_id": principal.location_id})
    ]
    if looks_like_id(notification_id):
        reads.append(
            (repository.ONE, {"calendar_id": calendar_id, "notification_id": notification_id})
        )
    calendar, *found = await db.fetch(*reads)
    if not calendar:
        raise NotFound("Calendar not found")
    if not found or not found[0]:
        raise NotFound("Notification not found")
    return found[0][0]


async def get_notification(
    session: AsyncSession, principal: Principal, calendar_id: str, notification_id: str
) -> Notification:
    calendar = await get_calendar(session, principal, calendar_id)
    row = None
    if looks_like_id(notification_id):
        row = await repository.get_for_calendar(session, calendar.id, notification_id)
    if row is None:
        raise NotFound("Notification not found")
    return row


async def update_notification(
    session: AsyncSession,
    principal: Principal,
    calendar_id: str,
    notification_id: str,
    changes: NotificationUpdate,
    now: datetime,
) -> Notification:
    """Partial update: fields present replace stored ones; the result must still be valid."""
    row = await get_notification(session, principal, calendar_id, notification_id)
    current = NotificationDraft.from_row(row)
    draft = current.merged(_wire_changes(changes))
    await _validate(session, principal, [draft], [""])
    if draft != current:
        for name, value in draft.as_columns().items():
            setattr(row, name, value)
        row.date_updated = utcnow()
        if _plans_differ(current, draft):
            # The wording is rendered at send time: only a change of what deliveries are
            # planned from makes the pending ones stale.
            row.version += 1
            await session.flush()
            await plan_rule_change(session, row, now)
        await session.flush()
    return row


# What a rule's deliveries are planned from; the rest (subject, body, template, sender)
# only matters when a message is rendered.
_PLANNING_FIELDS = (
    "receiver_type",
    "channel",
    "notification_type",
    "is_active",
    "deleted",
    "after_time",
    "before_time",
    "additional_email_ids",
    "additional_phone_numbers",
    "selected_users",
)


def _plans_differ(before: NotificationDraft, after: NotificationDraft) -> bool:
    return any(getattr(before, f) != getattr(after, f) for f in _PLANNING_FIELDS)


async def delete_notification(
    session: AsyncSession,
    principal: Principal,
    calendar_id: str,
    notification_id: str,
    now: datetime,
) -> None:
    """Soft delete; deleting twice is the same as deleting once."""
    row = await get_notification(session, principal, calendar_id, notification_id)
    if not row.deleted:
        row.deleted = True
        row.version += 1
        row.date_updated = utcnow()
        await session.flush()
        await plan_rule_change(session, row, now)


def _wire_changes(item: NotificationFieldsIn) -> dict[str, object]:
    changes = item.given()
    for name in ("after_time", "before_time"):
        if name in changes:
            changes[name] = schedule_entries(getattr(item, name))
    return changes


def draft_of(item: NotificationCreate) -> NotificationDraft:
    """The rule a create item describes, as it would be stored (not yet validated)."""
    changes: dict[str, Any] = _wire_changes(item)
    return NotificationDraft(**{k: v for k, v in changes.items() if k in DRAFT_FIELDS})


async def _validate(
    session: AsyncSession,
    principal: Principal,
    drafts: Sequence[NotificationDraft],
    prefixes: Sequence[str],
) -> None:
    errors = await draft_errors(session, principal, drafts, prefixes)
    if errors:
        raise BadRequest(errors)


async def draft_errors(
    session: AsyncSession,
    principal: Principal,
    drafts: Sequence[NotificationDraft],
    prefixes: Sequence[str],
    *,
    saving: bool = True,
) -> list[FieldError]:
    """Every problem of the drafts (semantics §2), each field named with its prefix.

    ``saving``: the drafts are about to be stored, so the templates they use are locked
    against a concurrent delete or change of type (PostgreSQL); a preview only reads.
    """
    errors: list[FieldError] = []
    for draft, prefix in zip(drafts, prefixes, strict=True):
        errors.extend(draft_problems(draft, prefix))
    wanted_users, wanted_templates = _lookups(drafts)
    users = await repository.existing_user_ids(session, principal.location_id, wanted_users)
    templates = await repository.template_types(
        session, principal.location_id, wanted_templates, lock=saving
    )
    return errors + _lookup_errors(drafts, prefixes, users, templates)


def _lookups(drafts: Sequence[NotificationDraft]) -> tuple[list[str], list[str]]:
    """The user ids and template ids the drafts name (well-formed ones), to look up."""
    users = {
        u for d in drafts for u in d.selected_users if u != SUB_ACCOUNT_ADMIN and looks_like_id(u)
    }
    templates = {d.template_id for d in drafts if looks_like_id(d.template_id)}
    return sorted(users), sorted(templates)


def _lookup_errors(
    drafts: Sequence[NotificationDraft],
    prefixes: Sequence[str],
    users: Collection[str],
    templates: Mapping[str, str],
) -> list[FieldError]:
    """The drafts' users that are not users of the location, and templates that are not
    its templates or not of the channel's type."""
    errors: list[FieldError] = []
    for draft, prefix in zip(drafts, prefixes, strict=True):
        for i, user_id in enumerate(draft.selected_users):
            if user_id != SUB_ACCOUNT_ADMIN and user_id not in users:
                errors.append(
                    FieldError(
                        f"{prefix}selectedUsers[{i}]",
                        f"{user_id!r} is not a user of this location or {SUB_ACCOUNT_ADMIN!r}",
                    )
                )
        expected = TEMPLATE_TYPE_BY_CHANNEL.get(draft.channel)
        if draft.template_id and expected is not None:
            found = templates.get(draft.template_id)
            if found is None:
                errors.append(
                    FieldError(f"{prefix}templateId", "is not a template of this location")
                )
            elif found != expected:
                errors.append(
                    FieldError(
                        f"{prefix}templateId",
                        f"is a {found} template; a {draft.channel.value} notification needs "
                        f"a {expected} template",
                    )
                )
    return errors
