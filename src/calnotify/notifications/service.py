"""The five Calendar Notifications operations (docs/semantics.md §2).

Each write is one transaction of compiled statements: one read of what it needs (the
calendar, the rule, the users and templates it names), the validation
(:func:`problems`, the one place rules are judged, used by previews too), the write, and
the planning it causes (:func:`calnotify.planning.jobs.plan_rule_change`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from calnotify.auth.tokens import Principal
from calnotify.calendars.service import CALENDAR_IN_LOCATION
from calnotify.db.base import utcnow
from calnotify.db.engine import Database
from calnotify.db.statements import Bound, Statement, by_id
from calnotify.db.tx import Reader
from calnotify.errors import BadRequest, FieldError, NotFound
from calnotify.ids import looks_like_id
from calnotify.notifications import repository
from calnotify.notifications.rules import (
    DRAFT_FIELDS,
    SUB_ACCOUNT_ADMIN,
    TEMPLATE_TYPE_BY_CHANNEL,
    NotificationDraft,
    draft_problems,
    schedule_entries,
    with_sender_number,
)
from calnotify.notifications.schemas import (
    NotificationCreate,
    NotificationFieldsIn,
    NotificationUpdate,
)
from calnotify.planning.jobs import plan_rule_change
from calnotify.planning.planner import SCHEDULED_TYPES

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


async def create_many(
    db: Database,
    principal: Principal,
    calendar_id: str,
    items: Sequence[NotificationCreate],
    now: datetime,
) -> tuple[list[Any], bool]:
    """Create every rule of the array, or none of them; the rules as their columns, and
    whether something due to send was planned. Active reminders and follow-ups are planned
    over the calendar in the same transaction (its first page)."""
    async with db.transaction() as tx:
        rows = await new_rules(tx, principal, calendar_id, items, lock=True)
        tx.write_many(repository.INSERT, rows)
        created = [repository.RuleRow(**row) for row in rows]
        due = False
        for rule in created:
            if rule.is_active and rule.notification_type in SCHEDULED_TYPES:
                # A new rule has no deliveries yet; only reminders and follow-ups plan ahead.
                due |= await plan_rule_change(tx, rule, now, new=True)
    return created, due


async def new_rules(
    reader: Reader,
    principal: Principal,
    calendar_id: str,
    items: Sequence[NotificationCreate],
    *,
    lock: bool,
) -> list[dict[str, Any]]:
    """The rows a create would insert, every one valid (else 400): what a POST writes
    and its impact preview shows (``lock``: as a POST, templates locked)."""
    if not looks_like_id(calendar_id):
        raise NotFound("Calendar not found")
    drafts = [draft_of(item) for item in items]
    prefixes = [f"[{i}]." for i in range(len(drafts))]
    # What needs no database (templates parsed, among others) before anything is read.
    static = [e for d, p in zip(drafts, prefixes, strict=True) for e in draft_problems(d, p)]
    location_id = principal.location_id
    drafts, found = await _checked(
        reader, location_id, drafts, prefixes, lock=lock, calendar_id=calendar_id
    )
    errors = static + found
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


async def update_notification(
    db: Database,
    principal: Principal,
    calendar_id: str,
    notification_id: str,
    changes: NotificationUpdate,
    now: datetime,
) -> bool:
    """Partial update: fields present replace stored ones; the result must still be valid.
    Whether something due to send was planned."""
    async with db.transaction() as tx:
        updated, replans = await edited_rule(
            tx, principal, calendar_id, notification_id, changes, lock=True
        )
        if updated is None:
            return False
        tx.write(repository.UPDATE, by_id(updated._asdict()))
        return await plan_rule_change(tx, updated, now) if replans else False


async def edited_rule(
    reader: Reader,
    principal: Principal,
    calendar_id: str,
    notification_id: str,
    changes: NotificationUpdate,
    *,
    lock: bool,
) -> tuple[Any | None, bool]:
    """The rule as an update would store it (``None``: it changes nothing), and whether
    its deliveries are re-planned; 400 when the result is not valid. What a PUT writes and
    its impact preview shows (``lock``: as a PUT, templates locked)."""
    row = await _rule(reader, principal.location_id, calendar_id, notification_id)
    current = NotificationDraft.from_row(row)
    merged = current.merged(_wire_changes(changes))
    [draft], found = await _checked(reader, principal.location_id, [merged], [""], lock=lock)
    errors = draft_problems(merged) + found
    if errors:
        raise BadRequest(errors)
    if draft == current:
        return None, False
    replans = _plans_differ(current, draft)
    # The wording is rendered at send time: only a change of what deliveries are
    # planned from makes the pending ones stale.
    updated = row._replace(
        **repository.columns_of(draft),
        version=row.version + 1 if replans else row.version,
        date_updated=utcnow(),
    )
    return updated, replans


async def delete_notification(
    db: Database,
    principal: Principal,
    calendar_id: str,
    notification_id: str,
    now: datetime,
) -> bool:
    """Soft delete; deleting twice is the same as deleting once. Whether a planning job
    was left for the dispatcher."""
    async with db.transaction() as tx:
        updated = await deleted_rule(tx, principal, calendar_id, notification_id)
        if updated is None:
            return False
        tx.write(repository.UPDATE, by_id(updated._asdict()))
        return await plan_rule_change(tx, updated, now)


async def deleted_rule(
    reader: Reader, principal: Principal, calendar_id: str, notification_id: str
) -> Any | None:
    """The rule as a delete would store it (``None``: it is deleted already)."""
    row = await _rule(reader, principal.location_id, calendar_id, notification_id)
    if row.deleted:
        return None
    return row._replace(deleted=True, version=row.version + 1, date_updated=utcnow())


# --- reads ---------------------------------------------------------------------------------


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
    """A page of the calendar's rules as the driver gives their columns (for an answer):
    the calendar check and the page read together outside any transaction."""
    page = {"calendar_id": calendar_id, "deleted": bool(deleted), "limit": limit, "skip": skip}
    if is_active is not None:
        page["is_active"] = is_active
    read = repository.PAGE if is_active is None else repository.PAGE_BY_ACTIVE
    return await _page(db, principal, read, page)


async def list_notifications(
    reader: Reader, principal: Principal, calendar_id: str, *, limit: int
) -> list[Any]:
    """The calendar's rules that are not deleted, in order, their columns converted: read
    like :func:`list_notification_columns` (the calendar check and the page together)."""
    page = {"calendar_id": calendar_id, "deleted": False, "limit": limit, "skip": 0}
    return await _page(reader, principal, repository.PAGE_CONVERTED, page)


async def _page(
    reader: Reader, principal: Principal, read: Statement, page: dict[str, Any]
) -> list[Any]:
    """A page of a calendar's rules, read with the check that the calendar is the
    location's (404 otherwise)."""
    calendar_id = page["calendar_id"]
    if not looks_like_id(calendar_id):
        raise NotFound("Calendar not found")
    calendar, rows = await reader.fetch(
        (CALENDAR_IN_LOCATION, {"calendar_id": calendar_id, "location_id": principal.location_id}),
        (read, page),
    )
    if not calendar:
        raise NotFound("Calendar not found")
    return list(rows)


async def get_notification_columns(
    db: Database, principal: Principal, calendar_id: str, notification_id: str
) -> Any:
    """One rule as the driver gives its columns, read the same way."""
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
    reader: Reader, principal: Principal, calendar_id: str, notification_id: str
) -> Any:
    """One rule of a calendar of the location (deleted ones too), its columns converted."""
    return await _rule(reader, principal.location_id, calendar_id, notification_id)


async def _rule(reader: Reader, location_id: str, calendar_id: str, notification_id: str) -> Any:
    if not looks_like_id(calendar_id):
        raise NotFound("Calendar not found")
    reads: list[tuple[Statement, dict[str, Any]]] = [
        (CALENDAR_IN_LOCATION, {"calendar_id": calendar_id, "location_id": location_id})
    ]
    if looks_like_id(notification_id):
        values = {"calendar_id": calendar_id, "notification_id": notification_id}
        reads.append((repository.RULE, values))
    calendar, *found = await reader.fetch(*reads)
    if not calendar:
        raise NotFound("Calendar not found")
    if not found or not found[0]:
        raise NotFound("Notification not found")
    return found[0][0]


# --- validation ------------------------------------------------------------------------------


def _plans_differ(before: NotificationDraft, after: NotificationDraft) -> bool:
    return any(getattr(before, f) != getattr(after, f) for f in _PLANNING_FIELDS)


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


async def checked(
    reader: Reader,
    principal: Principal,
    drafts: Sequence[NotificationDraft],
    prefixes: Sequence[str],
) -> tuple[list[NotificationDraft], list[FieldError]]:
    """The drafts as they would be stored (``fromNumber`` in E.164) and every problem of
    them (docs/semantics.md §2), each field named with its prefix: what a create or an
    update refuses, for previews and forms that judge without saving."""
    static = [e for d, p in zip(drafts, prefixes, strict=True) for e in draft_problems(d, p)]
    stored, found = await _checked(reader, principal.location_id, drafts, prefixes, lock=False)
    return stored, static + found


async def _checked(
    reader: Reader,
    location_id: str,
    drafts: Sequence[NotificationDraft],
    prefixes: Sequence[str],
    *,
    lock: bool,
    calendar_id: str | None = None,
) -> tuple[list[NotificationDraft], list[FieldError]]:
    """The drafts with their ``fromNumber`` read in the location's country, and the
    problems that need the database: users that are not users of the location, templates
    that are not its templates or not of the channel's type (``lock``: the templates are
    about to be used by a saved rule, and are locked against a delete or a change of type
    meanwhile, on PostgreSQL), numbers that are not phone numbers. With ``calendar_id``,
    read in the same trip: the calendar, which must be the location's (else 404)."""
    users = sorted(
        {u for d in drafts for u in d.selected_users if u != SUB_ACCOUNT_ADMIN and looks_like_id(u)}
    )
    templates = sorted({d.template_id for d in drafts if looks_like_id(d.template_id)})
    # Only what the drafts name is read (a list of no ids, a country no number needs, are
    # not asked for): one trip either way.
    numbers = any(d.from_number for d in drafts)
    reads: list[Bound] = []
    if calendar_id is not None:
        values = {"calendar_id": calendar_id, "location_id": location_id}
        reads.append((CALENDAR_IN_LOCATION, values))
    if users:
        reads.append((repository.USERS_IN_LOCATION, {"ids": users, "location_id": location_id}))
    if templates:
        read = repository.TEMPLATES_LOCKED if lock else repository.TEMPLATES
        reads.append((read, {"ids": templates, "location_id": location_id}))
    if numbers:
        reads.append((repository.LOCATION_COUNTRY, {"location_id": location_id}))
    found = iter(await reader.fetch(*reads) if reads else [])
    if calendar_id is not None and not next(found):
        raise NotFound("Calendar not found")
    users_found = next(found) if users else []
    templates_found = next(found) if templates else []
    countries = next(found) if numbers else []
    known_users = {row.id for row in users_found}
    known_templates = {row.id: row.type for row in templates_found}
    country = countries[0].country if countries else ""
    stored: list[NotificationDraft] = []
    errors = _lookup_errors(drafts, prefixes, known_users, known_templates)
    for draft, prefix in zip(drafts, prefixes, strict=True):
        draft, problems = with_sender_number(draft, country, prefix)
        stored.append(draft)
        errors.extend(problems)
    return stored, errors


def _lookup_errors(
    drafts: Sequence[NotificationDraft],
    prefixes: Sequence[str],
    users: Collection[str],
    templates: Mapping[str, str],
) -> list[FieldError]:
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
