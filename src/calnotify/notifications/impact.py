"""What saving a rule would do to pending sends (docs/semantics.md §2, docs/api.md "Rule
impact"): the deliveries cancelled, re-timed and newly planned, counted, the first
:data:`SAMPLES` of each shown.

Nothing is written and nothing is locked: the rule as the save would store it (the same
service functions a create, an update and a delete use) is counted over its whole
calendar by :mod:`calnotify.notifications.impact_counts` (the planner's definition as one
SQL statement), and the first few of each kind come from the planner's own page
(:func:`calnotify.planning.store.rule_page_plan`) over the earliest appointments its
re-planning job would walk (:func:`calnotify.planning.jobs.page_of`), read outside any
transaction, until it has them or :data:`BUDGET` seconds have passed. A rule the statement
does not count (one for guests) is counted by that walk alone, up to :data:`BUDGET` and
:data:`MAX_APPOINTMENTS` (the answer says up to which start). A rule that no longer plans
ahead (deleted, deactivated, not a reminder or follow-up any more) cancels what it has
pending: counted in SQL, the first few read. A cancelled send and a new one for the same
appointment and recipient by the same channel are one re-timed send (old → new due time).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, or_, select

from calnotify.auth.scopes import Scope
from calnotify.auth.tokens import Principal
from calnotify.db.statements import Statement
from calnotify.db.tx import Reader
from calnotify.deliveries.states import DeliveryStatus
from calnotify.models import Delivery
from calnotify.models.delivery import RecipientKind, Trigger
from calnotify.notifications import impact_counts, repository, service
from calnotify.notifications.preview_scopes import hidden
from calnotify.notifications.schemas import (
    ImpactChangeOut,
    ImpactGroupOut,
    ImpactOut,
    NotificationCreate,
    NotificationUpdate,
)
from calnotify.planning import store
from calnotify.planning.jobs import cursor_after, page_of, plans_ahead
from calnotify.planning.planner import Plan

#: Changes shown of each kind.
SAMPLES = 20
#: Appointments read per page; at most read by one impact, and the seconds its pages may
#: take: no page is read that would end at or past them at the pace of those before (a request
#: does bounded work, architecture principle 10, and answers within 500 ms). Beyond them,
#: the answer says how far it looked.
PAGE = 500
#: Appointments read per page when the counts are known and only the first few are shown.
SAMPLE_PAGE = 100
MAX_APPOINTMENTS = 20_000
BUDGET = 0.3
KINDS = ("cancelled", "retimed", "planned")

_D = Delivery.__table__.c
_SCHEDULED = DeliveryStatus.SCHEDULED.value
_SHOWN = (_D.id, _D.appointment_id, _D.instance_id, _D.recipient_kind, _D.recipient_ref,
          _D.channel, _D.recipient, _D.due_at)  # fmt: skip
_DETAILS = Statement(select(*_SHOWN).where(_D.id.in_(bindparam("ids", expanding=True))))


def _of_rule(*, schedule_only: bool, changed_sends: bool = False) -> tuple[Statement, Statement]:
    """(count, first few) of a rule's scheduled deliveries that re-planning it cancels:
    as :mod:`calnotify.planning.jobs` (all of them, or those of its schedule) and
    :func:`calnotify.deliveries.lifecycle.cancel_changed_sends` (``changed_sends``)."""
    where: list[Any] = [_D.notification_id == bindparam("id"), _D.status == _SCHEDULED]
    if schedule_only:
        where.append(_D.trigger == Trigger.SCHEDULE.value)
    if changed_sends:
        where += [
            _D.trigger == Trigger.EVENT.value,
            or_(
                _D.channel != bindparam("channel"),
                _D.receiver_type != bindparam("receiver_type"),
                _D.notification_type != bindparam("notification_type"),
            ),
        ]
    count = select(func.count()).select_from(Delivery.__table__).where(*where)
    first = select(*_SHOWN).where(*where).order_by(_D.due_at, _D.id).limit(SAMPLES)
    return Statement(count), Statement(first)


_ALL = _of_rule(schedule_only=False)
_SCHEDULE = _of_rule(schedule_only=True)
_CHANGED_SENDS = _of_rule(schedule_only=False, changed_sends=True)
#: In one pass over the rule's scheduled deliveries: its pending reminders or follow-ups,
#: and its immediate sends that a change of channel, receivers or type cancels.
_COUNTS = Statement(
    select(
        func.count().filter(_D.trigger == Trigger.SCHEDULE.value).label("pending"),
        func.count()
        .filter(
            _D.trigger == Trigger.EVENT.value,
            or_(
                _D.channel != bindparam("channel"),
                _D.receiver_type != bindparam("receiver_type"),
                _D.notification_type != bindparam("notification_type"),
            ),
        )
        .label("changed"),
    ).where(_D.notification_id == bindparam("id"), _D.status == _SCHEDULED)
)


@dataclass(frozen=True, slots=True)
class Change:
    """One pending send that saving would change."""

    appointment_id: str
    recipient_kind: str
    recipient: str
    old_due_at: datetime | None
    new_due_at: datetime | None


@dataclass
class Impact:
    """Counts of each kind, and the first :data:`SAMPLES` changes of each."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    first: dict[str, list[Change]] = field(default_factory=lambda: {k: [] for k in KINDS})
    #: The start of the last appointment looked at when not all of them were (a calendar
    #: with more than :data:`MAX_APPOINTMENTS` to re-plan); None: all were.
    checked_until: datetime | None = None
    #: The rule's pending reminders or follow-ups now, over the whole calendar (counted in
    #: SQL): what an incomplete count is out of.
    pending: int = 0

    def add(self, kind: str, changes: Iterable[Change]) -> None:
        for change in changes:
            self.counts[kind] += 1
            if len(self.first[kind]) < SAMPLES:
                self.first[kind].append(change)

    def extend(self, other: Impact) -> None:
        for kind in KINDS:
            self.counts[kind] += other.counts[kind]
            room = SAMPLES - len(self.first[kind])
            self.first[kind] += other.first[kind][: max(room, 0)]
        self.pending += other.pending
        if other.checked_until is not None:
            mine = self.checked_until
            self.checked_until = min(mine, other.checked_until) if mine else other.checked_until


async def update_impact(
    reader: Reader,
    principal: Principal,
    calendar_id: str,
    notification_id: str,
    changes: NotificationUpdate,
    now: datetime,
) -> Impact:
    """What the update (a PUT's body) would do; 400 and 404 as the PUT would answer."""
    updated, replans = await service.edited_rule(
        reader, principal, calendar_id, notification_id, changes, lock=False
    )
    if updated is None or not replans:
        return Impact()
    return await rule_impact(reader, updated, now)


async def create_impact(
    reader: Reader,
    principal: Principal,
    calendar_id: str,
    items: Sequence[NotificationCreate],
    now: datetime,
) -> Impact:
    """What creating the rules (a POST's body) would do."""
    impact = Impact()
    for row in await service.new_rules(reader, principal, calendar_id, items, lock=False):
        impact.extend(await rule_impact(reader, repository.RuleRow(**row), now, new=True))
    return impact


async def delete_impact(
    reader: Reader, principal: Principal, calendar_id: str, notification_id: str, now: datetime
) -> Impact:
    """What deleting the rule would do."""
    deleted = await service.deleted_rule(reader, principal, calendar_id, notification_id)
    return Impact() if deleted is None else await rule_impact(reader, deleted, now)


async def rule_impact(reader: Reader, rule: Any, now: datetime, *, new: bool = False) -> Impact:
    """What re-planning ``rule`` (as a save would store it; ``new``: created by it) would
    do to the pending sends of its calendar, written nowhere."""
    impact = Impact()
    if not plans_ahead(rule):
        if new:
            return impact
        count, first = _SCHEDULE if rule.is_active and not rule.deleted else _ALL
        await _cancelled(reader, impact, count, first, {"id": rule.id})
        return impact
    started = time.monotonic()
    if not new:
        values = {
            "id": rule.id,
            "channel": rule.channel,
            "receiver_type": rule.receiver_type,
            "notification_type": rule.notification_type,
        }
        [[counted]] = await reader.fetch((_COUNTS, values))
        impact.pending = int(counted.pending)
        if counted.changed:
            await _cancelled(reader, impact, *_CHANGED_SENDS, values)
    whole = await impact_counts.counts(reader, rule, now)
    if whole is not None:
        whole["cancelled"] += impact.counts["cancelled"]
    cursor, seen, pages = "", 0, 0
    # With the counts known, the walk only finds the first few of each kind.
    size = SAMPLE_PAGE if whole is not None else PAGE
    while page := await page_of(reader, rule, now, cursor, size):
        people = await store.people(reader, rule.location_id, [a.contact_id for a in page])
        ids = [a.id for a in page]
        stored = {} if new else await store.pending_of(reader, ids, rule_id=rule.id, shown=True)
        plan = await store.rule_page_plan(reader, page, rule, people, now, fresh=new, stored=stored)
        await _classify(reader, impact, plan, page, stored)
        seen, pages = seen + len(page), pages + 1
        if len(page) < size or (whole is not None and _shown_all(impact, whole)):
            break
        spent = time.monotonic() - started
        if seen >= MAX_APPOINTMENTS or spent + spent / pages >= BUDGET:
            impact.checked_until = page[-1].start_at
            break
        cursor = cursor_after(page)
    if whole is not None:
        # Counted over the whole calendar; the walk gave the first few of each.
        impact.counts, impact.checked_until = whole, None
    return impact


def _shown_all(impact: Impact, whole: dict[str, int]) -> bool:
    """Whether the walk has found the first :data:`SAMPLES` of each kind (or all)."""
    return all(len(impact.first[k]) >= min(SAMPLES, whole[k]) for k in KINDS)


async def _cancelled(
    reader: Reader, impact: Impact, count: Statement, first: Statement, values: dict[str, Any]
) -> None:
    [[total]], rows = await reader.fetch((count, values), (first, values))
    impact.add("cancelled", (_old(row) for row in rows))
    impact.counts["cancelled"] += int(total) - len(rows)


async def _classify(
    reader: Reader,
    impact: Impact,
    plan: Plan,
    page: Sequence[Any],
    stored: dict[str, list[Any]],
) -> None:
    """One page's plan as changes: what it cancels (of ``stored``, the rule's pending
    deliveries of the page) and what it plans, paired by appointment and recipient
    (re-timed), in the page's start order."""
    cancelled = {i for ids in plan.cancel.values() for i in ids}
    revived = {i: v for i, v in plan.revive if v["status"] == _SCHEDULED}
    # Sends made at once that the change cancels are counted over the whole rule before
    # the walk (:data:`_CHANGED_SENDS`); a save cancels them before it re-plans.
    found = [
        row
        for rows in stored.values()
        for row in rows
        if row.id in cancelled and row.trigger == Trigger.SCHEDULE.value
    ]
    if revived:
        [again] = await reader.fetch((_DETAILS, {"ids": list(revived)}))
        found += again
    # One message to one recipient by one channel: a send moved to another channel is
    # cancelled and planned anew, not re-timed.
    olds: dict[tuple[str, ...], list[Change]] = defaultdict(list)
    news: dict[tuple[str, ...], list[Change]] = defaultdict(list)
    for row in found:
        key = (row.appointment_id, row.recipient_kind, row.recipient_ref, row.channel)
        if row.id in revived:
            values = revived[row.id]
            shown = row.instance_id or row.appointment_id
            news[key].append(
                Change(shown, row.recipient_kind, values["recipient"], None, values["due_at"])
            )
        else:
            olds[key].append(_old(row))
    for row in plan.insert:
        if row["status"] == _SCHEDULED:
            key = (
                row["appointment_id"],
                row["recipient_kind"],
                row["recipient_ref"],
                row["channel"],
            )
            shown = row["instance_id"] or row["appointment_id"]
            news[key].append(
                Change(shown, row["recipient_kind"], row["recipient"], None, row["due_at"])
            )
    order = {a.id: i for i, a in enumerate(page)}
    for group in sorted(olds.keys() | news.keys(), key=lambda k: (order.get(k[0], -1), k)):
        old = sorted(olds.get(group, []), key=_when)
        new = sorted(news.get(group, []), key=_when)
        paired = min(len(old), len(new))
        impact.add(
            "retimed",
            (
                Change(o.appointment_id, o.recipient_kind, n.recipient, o.old_due_at, n.new_due_at)
                for o, n in zip(old[:paired], new[:paired], strict=True)
            ),
        )
        impact.add("cancelled", old[paired:])
        impact.add("planned", new[paired:])


def _old(row: Any) -> Change:
    return Change(
        row.instance_id or row.appointment_id, row.recipient_kind, row.recipient, row.due_at, None
    )


def _when(change: Change) -> datetime:
    when = change.old_due_at or change.new_due_at
    assert when is not None  # a change has one due time at least
    return when


#: Whose address is shown only with a scope (docs/semantics.md §9), as in a plan preview.
_SCOPE_OF = {
    RecipientKind.CONTACT.value: Scope.CONTACTS_READ,
    RecipientKind.USER.value: Scope.USERS_READ,
}


def impact_out(principal: Principal, impact: Impact) -> ImpactOut:
    """The answer, with the addresses ``principal`` may not read hidden."""

    def shown(change: Change) -> ImpactChangeOut:
        scope = _SCOPE_OF.get(change.recipient_kind)
        recipient = change.recipient
        if scope is not None and not principal.can(scope):
            recipient = hidden(scope)
        return ImpactChangeOut(
            appointment_id=change.appointment_id,
            recipient=recipient,
            old_due_at=change.old_due_at,
            new_due_at=change.new_due_at,
        )

    groups = {
        kind: ImpactGroupOut(
            count=impact.counts[kind], first=[shown(c) for c in impact.first[kind]]
        )
        for kind in KINDS
    }
    return ImpactOut(
        **groups,
        complete=impact.checked_until is None,
        checked_until=impact.checked_until,
        pending_of_rule=impact.pending,
    )
