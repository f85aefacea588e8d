"""What the planner reads and how its plans are written: compiled statements in the
transaction of the change (:mod:`calnotify.db.tx`).

Reads take anything that can ``fetch`` (a transaction, or the database itself for a read
outside one); a plan is written by :func:`write` in a handful of statements whatever its
size: a cancel per reason, a re-stamp per version, one insert of every new row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update

from calnotify.db.dialect import insert_ignoring_conflicts
from calnotify.db.statements import Statement, table
from calnotify.db.tx import Reader, Tx
from calnotify.deliveries import lifecycle
from calnotify.deliveries.states import PENDING
from calnotify.models import Calendar, Contact, Delivery, Location, Notification, User
from calnotify.models.appointment import AppointmentEventKind
from calnotify.planning.planner import (
    WAKE_CHANNEL,
    Plan,
    Wanted,
    add_rows,
    immediate_sends,
    settle,
    wanted_deliveries,
)
from calnotify.planning.recipients import People


@dataclass(frozen=True, slots=True)
class Event:
    """An appointment event, as planning reads it (see calnotify.appointments.events)."""

    id: int
    kind: str
    to_notify: bool
    status_after: str | None
    past: bool = False  # a booking of an appointment already started (docs/engine.md)


_D = Delivery.__table__.c
_PENDING = [s.value for s in PENDING]

RULES = Statement(
    select(*Notification.__table__.c).where(
        Notification.calendar_id == bindparam("calendar_id"),
        Notification.deleted.is_(False),
        Notification.is_active.is_(True),
    )
)
LOCATION = Statement(select(*Location.__table__.c).where(Location.id == bindparam("location_id")))
USERS = Statement(
    select(*User.__table__.c).where(
        User.location_id == bindparam("location_id"), User.deleted.is_(False)
    )
)
CONTACTS = Statement(
    select(*Contact.__table__.c).where(Contact.id.in_(bindparam("contact_ids", expanding=True)))
)
_C = Contact.__table__.c
#: Of the contacts, what the planner reads (calnotify.planning.recipients): whether and
#: where they can be reached, not their other fields (a rule's page reads thousands).
_REACHED = Statement(
    select(_C.id, _C.deleted, _C.email, _C.phone, _C.dnd, _C.dnd_settings).where(
        _C.id.in_(bindparam("contact_ids", expanding=True))
    )
)
#: A calendar's row locked against concurrent planning (PostgreSQL). NO KEY UPDATE: it does
#: not conflict with the key-share lock that inserting an appointment (its foreign key to
#: the calendar) takes; FOR UPDATE would, and two bookings would deadlock.
LOCK_CALENDAR = Statement(
    select(Calendar.id)
    .where(Calendar.id == bindparam("calendar_id"))
    .with_for_update(key_share=True)
)
_STORED = (
    _D.id, _D.appointment_id, _D.dedupe_key, _D.status, _D.calendar_id, _D.notification_id,
    _D.trigger, _D.notification_type, _D.channel, _D.receiver_type,
)  # fmt: skip
PENDING_OF = Statement(
    select(*_STORED).where(
        _D.appointment_id.in_(bindparam("appointment_ids", expanding=True)),
        _D.status.in_(_PENDING),
        # A webhook tells of an event that happened: no later change takes it back.
        _D.notification_id.is_not(None),
    )
)
_OF_RULE = (
    _D.appointment_id.in_(bindparam("appointment_ids", expanding=True)),
    _D.notification_id == bindparam("notification_id"),
    _D.status.in_(_PENDING),
)
PENDING_OF_RULE = Statement(select(*_STORED).where(*_OF_RULE))
#: The same, with what a rule's impact shows of each (calnotify.notifications.impact).
_SHOWN = (_D.instance_id, _D.recipient_kind, _D.recipient_ref, _D.recipient, _D.due_at)
PENDING_OF_RULE_SHOWN = Statement(select(*_STORED, *_SHOWN).where(*_OF_RULE))
EXISTING = Statement(
    select(_D.id, _D.dedupe_key, _D.status).where(
        _D.dedupe_key.in_(bindparam("keys", expanding=True))
    )
)
_RESTAMP_APPOINTMENT = Statement(
    update(table(Delivery))
    .where(_D.id.in_(bindparam("ids", expanding=True)))
    .values(appointment_version=bindparam("version"), updated_at=bindparam("now"))
)
_RESTAMP_RULE = Statement(
    update(table(Delivery))
    .where(_D.id.in_(bindparam("ids", expanding=True)))
    .values(notification_version=bindparam("version"), updated_at=bindparam("now"))
)
_INSERT = {
    dialect: Statement(insert_ignoring_conflicts(table(Delivery), dialect, "dedupe_key"))
    for dialect in ("sqlite", "postgresql")
}


def wake(tx: Tx) -> None:
    """Tell PostgreSQL's workers, after the commit, that something is due to send."""
    tx.notify(WAKE_CHANNEL)


async def lock_calendar(tx: Tx, calendar_id: str) -> None:
    """Serialise planning per calendar on PostgreSQL (SQLite serialises all writers)."""
    if tx.dialect.name != "sqlite":
        await tx.fetch((LOCK_CALENDAR, {"calendar_id": calendar_id}))


async def rules_of(reader: Reader, calendar_id: str) -> list[Any]:
    """The calendar's active rules."""
    [rows] = await reader.fetch((RULES, {"calendar_id": calendar_id}))
    return rows


async def people(reader: Reader, location_id: str, contact_ids: Iterable[str]) -> People:
    """The location with its users, and the given contacts (what the planner reads of
    them): whom messages go to."""
    location, users, contacts = await reader.fetch(
        (LOCATION, {"location_id": location_id}),
        (USERS, {"location_id": location_id}),
        (_REACHED, {"contact_ids": sorted(set(contact_ids))}),
    )
    return People(
        location=location[0],
        users={u.id: u for u in users},
        contacts={c.id: c for c in contacts},
    )


async def pending_of(
    reader: Reader,
    appointment_ids: Sequence[str],
    *,
    rule_id: str | None = None,
    shown: bool = False,
) -> dict[str, list[Any]]:
    """The pending (scheduled or sending) deliveries of the appointments, by appointment
    (of one rule only, with ``rule_id``; ``shown``: with their recipient and due time)."""
    if not appointment_ids:
        return {}
    ids = list(appointment_ids)
    if rule_id is None:
        [rows] = await reader.fetch((PENDING_OF, {"appointment_ids": ids}))
    else:
        statement = PENDING_OF_RULE_SHOWN if shown else PENDING_OF_RULE
        read = (statement, {"appointment_ids": ids, "notification_id": rule_id})
        [rows] = await reader.fetch(read)
    found: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        found[row.appointment_id].append(row)
    return found


async def existing(reader: Reader, keys: Sequence[str]) -> dict[str, Any]:
    """The stored deliveries of these dedupe keys, by key."""
    if not keys:
        return {}
    [rows] = await reader.fetch((EXISTING, {"keys": list(keys)}))
    return {row.dedupe_key: row for row in rows}


def write(tx: Tx, plan: Plan, now: datetime) -> bool:
    """Write ``plan``; whether it planned something due to send (PostgreSQL's workers are
    told at commit; the caller wakes its own process's dispatcher)."""
    for reason, ids in plan.cancel.items():
        lifecycle.cancel(tx, reason, ids, now)
    for statement, stamps in (
        (_RESTAMP_APPOINTMENT, plan.restamp_appointment),
        (_RESTAMP_RULE, plan.restamp_rule),
    ):
        by_version: dict[int, list[str]] = defaultdict(list)
        for delivery_id, version in stamps:
            by_version[version].append(delivery_id)
        for version, ids in by_version.items():
            tx.write(statement, {"ids": ids, "version": version, "now": now})
    lifecycle.replan(tx, plan.revive)
    tx.write_many(_INSERT[tx.dialect.name], plan.insert)
    if plan.due:
        wake(tx)
    return plan.due


async def plan_appointments(
    tx: Tx,
    changes: Sequence[tuple[Any, Sequence[Event]]],
    rules: Sequence[Any],
    people: People,
    now: datetime,
    *,
    fresh: set[str] = frozenset(),  # type: ignore[assignment]
) -> bool:
    """Re-plan appointments after their events (recorded in this transaction): what they
    send at once, and their reminders and follow-ups, reconciled with what they have
    (``fresh``: appointments new in this transaction, which have nothing yet). Two reads
    whatever their number; whether something due to send was planned."""
    by_id = {r.id: r for r in rules}
    stored = await pending_of(tx, [a.id for a, _ in changes if a.id not in fresh])
    plan = Plan()
    wanted_of: list[tuple[Any, dict[str, Wanted]]] = []
    for appointment, events in changes:
        wanted = wanted_deliveries(appointment, rules, people, now, immediate_sends(events))
        if appointment.id not in fresh:
            settle(
                plan,
                appointment,
                by_id,
                wanted,
                stored.get(appointment.id, []),
                superseding_reschedule=any(
                    e.kind == AppointmentEventKind.RESCHEDULED for e in events
                ),
                moved_by="appointment",
            )
        wanted_of.append((appointment, wanted))
    keys = [k for a, wanted in wanted_of if a.id not in fresh for k in wanted]
    found = await existing(tx, keys)
    for appointment, wanted in wanted_of:
        add_rows(plan, appointment, wanted.values(), found, people, now)
    return write(tx, plan, now)


async def plan_rule_page(
    tx: Tx,
    appointments: Sequence[Any],
    rule: Any,
    people: People,
    now: datetime,
    *,
    fresh: bool = False,
) -> bool:
    """Re-plan one rule over a page of appointments (``fresh``: a new rule, nothing of it
    stored yet); whether something due to send was planned."""
    plan = await rule_page_plan(tx, appointments, rule, people, now, fresh=fresh)
    return write(tx, plan, now)


async def rule_page_plan(
    reader: Reader,
    appointments: Sequence[Any],
    rule: Any,
    people: People,
    now: datetime,
    *,
    fresh: bool = False,
    stored: dict[str, list[Any]] | None = None,
) -> Plan:
    """What re-planning one rule over a page of appointments would write, read and worked
    out without writing: :func:`plan_rule_page` writes it, a rule's impact preview
    (calnotify.notifications.impact) shows it (``stored``: the rule's pending deliveries
    of the page, by appointment, when already read)."""
    if stored is None:
        ids = [a.id for a in appointments]
        stored = {} if fresh else await pending_of(reader, ids, rule_id=rule.id)
    plan = Plan()
    wanted_of: list[tuple[Any, dict[str, Wanted]]] = []
    for appointment in appointments:
        wanted = wanted_deliveries(appointment, [rule], people, now, [])
        settle(
            plan,
            appointment,
            {rule.id: rule},
            wanted,
            stored.get(appointment.id, []),
            superseding_reschedule=False,
            moved_by="notification",
        )
        wanted_of.append((appointment, wanted))
    found = {} if fresh else await existing(reader, [k for _, w in wanted_of for k in w])
    for appointment, wanted in wanted_of:
        add_rows(plan, appointment, wanted.values(), found, people, now)
    return plan
