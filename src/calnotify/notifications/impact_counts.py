"""A rule's impact counted over its whole calendar in one SQL statement
(:mod:`calnotify.notifications.impact`; docs/api.md "Rule impact").

The statement is the planner's definition (:mod:`calnotify.planning.planner`) written as
SQL, for the appointments its re-planning job walks (:func:`calnotify.planning.jobs.page_of`):

- *wanted*: for each live appointment (a reminder: ``new`` or ``confirmed``; a follow-up:
  those or ``showed``), each offset and each recipient, a due time (its start minus the
  offset, or its end plus it), within an occurrence's ``planned_until``;
- a wanted send is *kept* when a pending delivery has its dedupe key, matched here by the
  columns the key is made of (rule, appointment, due time, channel, receivers,
  recipient); otherwise it is *planned* when no delivery has the key or only a cancelled
  one (brought back), its recipient can be reached (an address, no DND) and it is not late;
- the rule's scheduled reminders or follow-ups of those appointments that are not kept
  are *cancelled*;
- per appointment, recipient and channel, a cancelled send and a planned one are one
  *re-timed* send, as :func:`calnotify.notifications.impact._classify` pairs them.

Recipients come from a join for the contact and the assigned user, and from the
planner's own :func:`~calnotify.planning.recipients.recipients` and
:func:`~calnotify.planning.recipients.resolve` for a rule's fixed ones (users, the
location, literal addresses). A rule for an appointment's guests, or an offset that is not
a whole number of seconds, is not counted here (:func:`counts` answers None) and the
impact counts what its walk reaches. A wanted send meets its stored row through the
appointment's index (:class:`_Unindexed`), so the statement is linear in the calendar's
size (bench/impact.py measures it on 50,000 appointments). ``tests/test_impact_counts.py``
compares these counts with the planner's on calendars of every case.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Integer,
    String,
    and_,
    bindparam,
    case,
    false,
    func,
    literal,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from calnotify.db.base import UTCDateTime
from calnotify.db.statements import Statement
from calnotify.db.tx import Reader
from calnotify.deliveries.states import DeliveryStatus
from calnotify.models import Appointment, Contact, Delivery, User
from calnotify.models.appointment import AppointmentStatus
from calnotify.models.delivery import RecipientKind, Trigger
from calnotify.models.notification import Channel, NotificationType, ReceiverType
from calnotify.notifications.rules import offset_seconds
from calnotify.planning import store
from calnotify.planning.planner import DEADLINE, LIVE
from calnotify.planning.recipients import DND_KEY, DND_ON, recipients, resolve

_A = Appointment.__table__.c
_C = Contact.__table__.c
_U = User.__table__.c
_D = Delivery.__table__.c
_SCHEDULED = DeliveryStatus.SCHEDULED.value
_CANCELLED = DeliveryStatus.CANCELLED.value
#: Recipients resolved for each appointment by a join; the others are the same for every
#: appointment of the calendar.
_JOINED = (ReceiverType.CONTACT, ReceiverType.ASSIGNED_USER)


class _Shifted(FunctionElement[datetime]):
    """A UTC datetime column moved by a whole number of seconds (an integer expression),
    in the column's own stored form: on SQLite the text SQLAlchemy writes
    (``YYYY-MM-DD HH:MM:SS.ffffff``), so it compares and matches as stored values do."""

    type = UTCDateTime()
    inherit_cache = True
    name = "shifted"


@compiles(_Shifted, "sqlite")
def _shifted_sqlite(element: _Shifted, compiler: SQLCompiler, **kw: Any) -> str:
    column, seconds = (compiler.process(c, **kw) for c in element.clauses)
    # strftime keeps whole seconds; the fraction is the stored value's own.
    return (
        f"(strftime('%Y-%m-%d %H:%M:%S', {column}, ({seconds}) || ' seconds')"
        f" || substr({column}, 20))"
    )


@compiles(_Shifted, "postgresql")
def _shifted_postgresql(element: _Shifted, compiler: SQLCompiler, **kw: Any) -> str:
    column, seconds = (compiler.process(c, **kw) for c in element.clauses)
    return f"({column} + make_interval(secs => ({seconds})))"


class _Unindexed(FunctionElement[str]):
    """A text column SQLite must not look rows up by: a wanted send meets its stored row
    through the appointment's index, never through the rule's (a scan of the rule's rows
    for each appointment) or ``resend_of``'s (the same for almost every row), which
    SQLite, planning without statistics, would pick. PostgreSQL plans by its statistics
    (kept by autovacuum) and gets the column as it is: an expression there would be
    estimated as selective and make it choose a nested loop."""

    type = String()
    inherit_cache = True
    name = "unindexed"


@compiles(_Unindexed, "sqlite")
def _unindexed_sqlite(element: _Unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    [column] = (compiler.process(c, **kw) for c in element.clauses)
    return f"+{column}"  # SQLite's unary plus: the same value, no index


@compiles(_Unindexed, "postgresql")
def _unindexed_postgresql(element: _Unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    [column] = (compiler.process(c, **kw) for c in element.clauses)
    return str(column)


def _offsets(rule: Any) -> list[int] | None:
    """The rule's distinct offsets in whole seconds, signed (before the start: negative);
    None when one is not a whole number of seconds."""
    reminder = rule.notification_type == NotificationType.REMINDER
    seconds = {offset_seconds(e) for e in (rule.before_time if reminder else rule.after_time)}
    if any(s != int(s) for s in seconds):
        return None
    return sorted(-int(s) if reminder else int(s) for s in seconds)


def _reachable_contact(channel: str) -> ColumnElement[bool]:
    """Whether the appointment's contact can be reached by ``channel`` (as
    :func:`~calnotify.planning.recipients.resolve`): there, an address, no DND."""
    address = _C.email if channel == Channel.EMAIL else _C.phone
    reachable = and_(
        _C.id.is_not(None),
        _C.deleted.is_(False),
        func.coalesce(address, "") != "",
        _C.dnd.is_(False),
    )
    key = DND_KEY.get(channel)
    if key is None:
        return reachable
    status = _C.dnd_settings[key]["status"].as_string()
    return and_(reachable, or_(status.is_(None), status.not_in(DND_ON)))


def _reachable_user(channel: str) -> ColumnElement[bool]:
    if channel == Channel.IN_APP:
        return _U.id.is_not(None)
    address = _U.email if channel == Channel.EMAIL else _U.phone
    return and_(_U.id.is_not(None), func.coalesce(address, "") != "")


def _rows(rows: list[Any]) -> Any:
    """Selects of literals as one selectable (at least one)."""
    return rows[0] if len(rows) == 1 else union_all(*rows)


def _walked(reminder: bool) -> Any:
    """The appointments the rule's re-planning walks (as :func:`page_of`): a subquery,
    not a CTE, so PostgreSQL estimates its rows from the table's statistics (a CTE's
    estimate made it choose nested loops, twice as slow at 50,000)."""
    return (
        select(
            _A.id,
            _A.start_at,
            _A.end_at,
            _A.status,
            _A.master_id,
            _A.planned_until,
            _A.contact_id,
            _A.assigned_user_id,
        )
        .where(
            _A.calendar_id == bindparam("calendar_id"),
            _A.deleted.is_(False),
            _A.rrule == "",
            (_A.start_at if reminder else _A.end_at) > bindparam("since"),
        )
        .subquery("walked")
    )


def _recipients(rule: Any, walked: Any, fixed: list[tuple[str, str, bool]]) -> tuple[Any, ...]:
    """(kind, ref, reachable, the walked appointments joined with whom they reach)."""
    a = walked.c
    if rule.receiver_type == ReceiverType.CONTACT:
        joined = walked.outerjoin(Contact.__table__, _C.id == a.contact_id)
        kind = literal(RecipientKind.CONTACT.value, String)
        return kind, literal("", String), _reachable_contact(rule.channel), joined
    if rule.receiver_type == ReceiverType.ASSIGNED_USER:
        joined = walked.outerjoin(
            User.__table__,
            and_(
                _U.id == a.assigned_user_id,
                _U.location_id == bindparam("location_id"),
                _U.deleted.is_(False),
            ),
        )
        ref = func.coalesce(a.assigned_user_id, "")
        kind = literal(RecipientKind.USER.value, String)
        return kind, ref, _reachable_user(rule.channel), joined
    people = _rows(
        [
            select(
                literal(k, String).label("kind"),
                literal(r, String).label("ref"),
                (true() if reachable else false()).label("ok"),
            )
            for k, r, reachable in fixed
        ]
    ).cte("fixed_recipients")
    return people.c.kind, people.c.ref, people.c.ok, walked.join(people, true())


def _statement(
    rule: Any, offsets: list[int], fixed: list[tuple[str, str, bool]], *, wants: bool = True
) -> Statement:
    """The counting statement for ``rule`` (``fixed``: its recipients when they are the
    same for every appointment, as (kind, ref, reachable); ``wants``: False when it wants
    nothing, no offset or no recipient, and only cancels)."""
    reminder = rule.notification_type == NotificationType.REMINDER
    live = [s.value for s in LIVE]
    if not reminder:
        live.append(AppointmentStatus.SHOWED.value)
    walked = _walked(reminder)
    a = walked.c
    offs = _rows([select(literal(o, Integer).label("o")) for o in offsets]).cte("offsets")
    kind, ref, ok, joined = _recipients(rule, walked, fixed)
    due = _Shifted(a.start_at if reminder else a.end_at, offs.c.o)
    wanted = (
        select(
            a.id.label("aid"),
            kind.label("kind"),
            ref.label("ref"),
            ok.label("ok"),
            due.label("due"),
        )
        .select_from(joined.join(offs, true()))
        .where(
            a.status.in_(live),
            or_(a.master_id.is_(None), a.planned_until.is_(None), due <= a.planned_until),
            true() if wants else false(),
        )
        .cte("wanted")
    )
    w = wanted.c
    stored = Delivery.__table__.alias("stored")
    s = stored.c
    same_key = and_(
        _Unindexed(s.notification_id) == bindparam("rule_id"),
        s.appointment_id == w.aid,
        s.trigger == Trigger.SCHEDULE.value,
        s.due_at == w.due,
        s.channel == rule.channel,
        s.receiver_type == rule.receiver_type,
        s.recipient_kind == w.kind,
        s.recipient_ref == w.ref,
        _Unindexed(s.resend_of) == "",
    )
    planned = and_(w.ok, w.due >= bindparam("now"), or_(s.id.is_(None), s.status == _CANCELLED))
    parts = union_all(
        # Every scheduled reminder or follow-up of the rule on those appointments ...
        select(
            _D.appointment_id.label("aid"),
            _D.recipient_kind.label("kind"),
            _D.recipient_ref.label("ref"),
            _D.channel.label("channel"),
            literal(1, Integer).label("old"),
            literal(0, Integer).label("new"),
        ).where(
            _D.notification_id == bindparam("rule_id"),
            _D.status == _SCHEDULED,
            _D.trigger == Trigger.SCHEDULE.value,
            _D.appointment_id.in_(select(a.id)),
        ),
        # ... less those still wanted (kept), and what is planned.
        select(
            w.aid,
            w.kind,
            w.ref,
            literal(rule.channel, String).label("channel"),
            case((s.status == _SCHEDULED, -1), else_=0).label("old"),
            case((planned, 1), else_=0).label("new"),
        ).select_from(wanted.outerjoin(stored, same_key)),
    ).subquery("parts")
    p = parts.c
    groups = (
        select(func.sum(p.old).label("old"), func.sum(p.new).label("new"))
        .group_by(p.aid, p.kind, p.ref, p.channel)
        .subquery("groups")
    )
    g = groups.c
    return Statement(
        select(
            func.coalesce(func.sum(case((g.old < g.new, g.old), else_=g.new)), 0).label("paired"),
            func.coalesce(func.sum(g.old), 0).label("old"),
            func.coalesce(func.sum(g.new), 0).label("new"),
        )
    )


async def counts(reader: Reader, rule: Any, now: datetime) -> dict[str, int] | None:
    """What re-planning ``rule`` (as a save would store it, planning ahead) would do to
    its reminders or follow-ups over the whole calendar: cancelled, re-timed and planned;
    None when it is not counted here (see the module's docs)."""
    offsets = _offsets(rule)
    if rule.receiver_type == ReceiverType.GUEST or offsets is None:
        return None
    fixed: list[tuple[str, str, bool]] = []
    if rule.receiver_type not in _JOINED:
        people = await store.people(reader, rule.location_id, [])
        for found in recipients(rule, None, people):  # type: ignore[arg-type]
            reached = resolve(found, rule.channel, None, people)  # type: ignore[arg-type]
            fixed.append((found.kind.value, found.ref, reached.skip is None))
    wants = bool(offsets) and (bool(fixed) or rule.receiver_type in _JOINED)
    longest = max((abs(o) for o in offsets), default=0)
    reminder = rule.notification_type == NotificationType.REMINDER
    values = {
        "calendar_id": rule.calendar_id,
        "location_id": rule.location_id,
        "rule_id": rule.id,
        "since": now if reminder else now - timedelta(seconds=longest) - DEADLINE,
        "now": now,
    }
    statement = _statement(
        rule, offsets or [0], fixed or [(RecipientKind.ADDRESS.value, "", False)], wants=wants
    )
    [[row]] = await reader.fetch((statement, values))
    paired, old, new = int(row.paired), int(row.old), int(row.new)
    return {"cancelled": old - paired, "retimed": paired, "planned": new - paired}
