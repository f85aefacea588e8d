"""The five Calendar Notifications operations (semantics §2).

Services never commit: the request's unit of work does.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.auth.tokens import Principal
from calnotify.calendars.service import CALENDAR_IN_LOCATION, get_calendar
from calnotify.db.base import utcnow
from calnotify.db.engine import Database
from calnotify.db.reads import Query
from calnotify.errors import BadRequest, FieldError, NotFound
from calnotify.ids import looks_like_id
from calnotify.models import Notification
from calnotify.notifications import repository
from calnotify.notifications.rules import (
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
    session: AsyncSession,
    principal: Principal,
    calendar_id: str,
    items: Sequence[NotificationCreate],
    now: datetime,
) -> list[Notification]:
    """Create every rule of the array, or none of them."""
    calendar = await get_calendar(session, principal, calendar_id)
    drafts = [draft_of(item) for item in items]
    prefixes = [f"[{i}]." for i in range(len(drafts))]
    await _validate(session, principal, drafts, prefixes)

    now = utcnow()
    rows = [
        Notification(
            location_id=calendar.location_id,
            calendar_id=calendar.id,
            batch_index=i,
            date_added=now,
            date_updated=now,
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
    reads: list[tuple[Query, dict[str, Any]]] = [
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
    return NotificationDraft(
        receiver_type=item.receiver_type,
        channel=item.channel,
        notification_type=item.notification_type,
    ).merged(_wire_changes(item))


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

    wanted_users = {
        u for d in drafts for u in d.selected_users if u != SUB_ACCOUNT_ADMIN and looks_like_id(u)
    }
    users = await repository.existing_user_ids(session, principal.location_id, wanted_users)
    wanted_templates = {d.template_id for d in drafts if looks_like_id(d.template_id)}
    templates = await repository.template_types(
        session, principal.location_id, wanted_templates, lock=saving
    )

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
