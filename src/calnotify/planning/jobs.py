"""Planning work proportional to a calendar's size, in pages (architecture principle 10).

Creating, editing, deactivating or deleting a reminder or follow-up rule re-plans every
future appointment of its calendar; deleting a calendar cancels everything it had pending.
Neither is done in one transaction: the request does the first page (at most :data:`PAGE`
appointments or deliveries) in its own transaction and, when more remain, leaves a
``planning_jobs`` row that the dispatcher works through a page at a time, each page with
its cursor in one short transaction (about 20 ms for 100 appointments on SQLite;
bench/replan.py). A crash or a stopped service resumes at the last committed page; on
PostgreSQL two workers never work on the same job at once (the job row is locked for its
page, ``SKIP LOCKED``).

While a rule's job runs, nothing stale is sent and nothing is lost: the rule's version
moved on, so its old deliveries meet the fence; one that comes due before its page was
re-planned is held back for a second (not skipped) as long as the rule's
``planned_version`` is behind its ``version``. Pages go in start order, so the
appointments that come first are re-planned first; a reminder whose due time passes
before its page is reached is planned ``skipped``/``late`` like any reminder planned late
(docs/semantics.md §3), never silently dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, case, insert, or_, select, update

from calnotify.appointments.rows import COLUMNS as _APPOINTMENT_COLUMNS
from calnotify.appointments.rows import row_of
from calnotify.clock import Clock
from calnotify.db.engine import Database
from calnotify.db.statements import Statement, table
from calnotify.db.tx import Reader, Tx
from calnotify.deliveries import lifecycle
from calnotify.deliveries.states import DeliveryStatus, Reason
from calnotify.ids import new_id
from calnotify.models import Appointment, Delivery, Notification, PlanningJob
from calnotify.models.delivery import Trigger
from calnotify.models.notification import NotificationType
from calnotify.models.planning_job import PlanningJobKind, PlanningJobStatus
from calnotify.notifications.rules import offset_seconds
from calnotify.planning import store
from calnotify.planning.planner import DEADLINE, SCHEDULED_TYPES

# Appointments (or deliveries) per page: one page is one short write transaction.
PAGE = 100

_J = PlanningJob.__table__.c
_N = Notification.__table__.c
_A = Appointment.__table__.c
_D = Delivery.__table__.c
_PENDING = PlanningJobStatus.PENDING.value


@dataclass
class Job:
    """A planning job as its columns."""

    id: str
    location_id: str
    calendar_id: str
    notification_id: str
    notification_version: int
    kind: str
    fresh: bool
    status: str
    cursor: str
    pages: int
    items: int
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None


_JOB_COLUMNS = [_J[n] for n in Job.__dataclass_fields__]
_NEXT_JOB = Statement(
    select(*_JOB_COLUMNS)
    .where(_J.status == _PENDING)
    .order_by(_J.created_at, _J.id)
    .limit(1)
    .with_for_update(skip_locked=True)
)
_INSERT_JOB = Statement(insert(table(PlanningJob)))
_UPDATE_JOB = Statement(
    update(table(PlanningJob))
    .where(_J.id == bindparam("b_id"))
    .values(
        {
            n: bindparam(n)
            for n in ("status", "cursor", "pages", "items", "updated_at", "finished_at")
        }
    )
)
_SUPERSEDE = Statement(
    update(table(PlanningJob))
    .where(_J.notification_id == bindparam("notification_id"), _J.status == _PENDING)
    .values(
        status=PlanningJobStatus.SUPERSEDED.value,
        updated_at=bindparam("now"),
        finished_at=bindparam("now"),
    )
)
_JOBS_OF_RULE = Statement(
    select(*_JOB_COLUMNS)
    .where(_J.notification_id == bindparam("notification_id"))
    # Newest first; of jobs made in one instant, the pending one (a rule has at most one:
    # a newer change supersedes the older) is the newer.
    .order_by(
        _J.created_at.desc(),
        case((_J.status == _PENDING, 0), else_=1),
        _J.id.desc(),
    )
    .limit(bindparam("limit"))
)
_RULE = Statement(select(*_N).where(_N.id == bindparam("id")))
_SET_PLANNED = Statement(
    update(table(Notification))
    .where(_N.id == bindparam("id"))
    .values(planned_version=bindparam("planned_version"))
)
_RESTAMP_EVENT_SENDS = Statement(
    update(table(Delivery))
    .where(
        _D.notification_id == bindparam("notification_id"),
        _D.trigger == Trigger.EVENT.value,
        _D.status.in_([s.value for s in lifecycle.PENDING]),
        _D.channel == bindparam("channel"),
        _D.receiver_type == bindparam("receiver_type"),
        _D.notification_type == bindparam("notification_type"),
    )
    .values(notification_version=bindparam("version"), updated_at=bindparam("now"))
)


def _pending_ids(*, by_rule: bool, schedule_only: bool = False) -> Statement:
    where = [_D.status == DeliveryStatus.SCHEDULED.value]
    if by_rule:
        where.append(_D.notification_id == bindparam("owner"))
    else:
        # A webhook tells of an event that happened: a calendar's deletion keeps it.
        where += [_D.calendar_id == bindparam("owner"), _D.notification_id.is_not(None)]
    if schedule_only:
        where.append(_D.trigger == Trigger.SCHEDULE.value)
    return Statement(select(_D.id).where(*where).limit(bindparam("page")))


_OF_RULE = _pending_ids(by_rule=True)
_OF_RULE_SCHEDULED = _pending_ids(by_rule=True, schedule_only=True)
_OF_CALENDAR = _pending_ids(by_rule=False)


def _page(*, reminder: bool, after: bool) -> Statement:
    query = select(*[_A[n] for n in _APPOINTMENT_COLUMNS]).where(
        _A.calendar_id == bindparam("calendar_id"),
        _A.deleted.is_(False),
        _A.rrule == "",  # a series' master: its occurrences are planned instead
    )
    query = query.where(
        _A.start_at > bindparam("since") if reminder else _A.end_at > bindparam("since")
    )
    if after:
        at: Any = bindparam("at")
        last: Any = bindparam("last_id")
        # The first condition bounds the index range; the second breaks ties.
        query = query.where(
            _A.start_at >= at, or_(_A.start_at > at, and_(_A.start_at == at, _A.id > last))
        )
    return Statement(query.order_by(_A.start_at, _A.id).limit(bindparam("page")))


_PAGES = {(r, a): _page(reminder=r, after=a) for r in (True, False) for a in (True, False)}


# --- starting work --------------------------------------------------------------------------


async def plan_rule_change(tx: Tx, rule: Any, now: datetime, *, new: bool = False) -> bool:
    """Re-plan after a rule was created (``new``) or changed what its deliveries are
    planned from (receivers, channel, type, schedule, active, deleted); whether something
    due to send was planned (or a job was left for the dispatcher).

    Its pending immediate sends are settled here (they are few: sent within seconds); its
    reminders and follow-ups over the calendar are re-planned a page at a time, the first
    page in this transaction.
    """
    await store.lock_calendar(tx, rule.calendar_id)
    if rule.is_active and not rule.deleted:
        # Pending immediate sends keep going unless the rule now means something else.
        lifecycle.cancel_changed_sends(tx, rule, now)
        tx.write(
            _RESTAMP_EVENT_SENDS,
            {
                "notification_id": rule.id,
                "channel": rule.channel,
                "receiver_type": rule.receiver_type,
                "notification_type": rule.notification_type,
                "version": rule.version,
                "now": now,
            },
        )
    # A newer change of the rule takes over from any job still planning an older one.
    tx.write(_SUPERSEDE, {"notification_id": rule.id, "now": now})
    job = _new_job(PlanningJobKind.RULE, rule.location_id, rule.calendar_id, now, rule=rule)
    job.fresh = new
    finished, due = await _rule_page(tx, job, rule, now)
    planned = rule.version if finished else min(rule.planned_version, rule.version - 1)
    tx.write(_SET_PLANNED, {"id": rule.id, "planned_version": planned})
    if not finished:
        tx.write(_INSERT_JOB, _job_values(job))
    return due or not finished


async def cancel_for_calendar(tx: Tx, location_id: str, calendar_id: str, now: datetime) -> bool:
    """A deleted calendar's pending deliveries are cancelled (the fence already stops
    them); whether a job was left for the dispatcher."""
    job = _new_job(PlanningJobKind.CALENDAR, location_id, calendar_id, now)
    if await _calendar_page(tx, job, now):
        return False
    tx.write(_INSERT_JOB, _job_values(job))
    return True


# --- the dispatcher's side ------------------------------------------------------------------


async def run_jobs(db: Database, clock: Clock, *, pages: int = 50) -> tuple[int, bool]:
    """Work through pending jobs, one page per short write transaction; the pages done,
    and whether something due to send was planned."""
    done = 0
    due = False
    while done < pages:
        now = clock.now()
        async with db.transaction() as tx:
            [found] = await tx.fetch((_NEXT_JOB, {}))
            if not found:
                break
            job = Job(**found[0]._asdict())
            due |= await _run_page(tx, job, now)
            tx.write(_UPDATE_JOB, _job_update(job))
        done += 1
        await asyncio.sleep(0)  # let other writers in between pages
    return done, due


async def jobs_of_rule(reader: Reader, rule_id: str, limit: int = 10) -> list[Job]:
    [found] = await reader.fetch((_JOBS_OF_RULE, {"notification_id": rule_id, "limit": limit}))
    return [Job(**row._asdict()) for row in found]


# --- pages ----------------------------------------------------------------------------------


def _new_job(
    kind: PlanningJobKind,
    location_id: str,
    calendar_id: str,
    now: datetime,
    *,
    rule: Any | None = None,
) -> Job:
    return Job(
        id=new_id(),
        location_id=location_id,
        calendar_id=calendar_id,
        notification_id=rule.id if rule else "",
        notification_version=rule.version if rule else 0,
        kind=kind.value,
        fresh=False,
        status=_PENDING,
        cursor="",
        pages=0,
        items=0,
        created_at=now,
        updated_at=now,
    )


def _job_values(job: Job) -> dict[str, Any]:
    return {n: getattr(job, n) for n in Job.__dataclass_fields__}


def _job_update(job: Job) -> dict[str, Any]:
    names = ("status", "cursor", "pages", "items", "updated_at", "finished_at")
    return {"b_id": job.id, **{n: getattr(job, n) for n in names}}


async def _run_page(tx: Tx, job: Job, now: datetime) -> bool:
    job.updated_at = now
    due = False
    if job.kind == PlanningJobKind.RULE:
        [found] = await tx.fetch((_RULE, {"id": job.notification_id}))
        rule = found[0] if found else None
        if rule is None or rule.version != job.notification_version:
            job.status, job.finished_at = PlanningJobStatus.SUPERSEDED.value, now
            return False
        finished, due = await _rule_page(tx, job, rule, now)
        if finished:
            tx.write(_SET_PLANNED, {"id": rule.id, "planned_version": rule.version})
    else:
        finished = await _calendar_page(tx, job, now)
    if finished:
        job.status, job.finished_at = PlanningJobStatus.DONE.value, now
    return due


def plans_ahead(rule: Any) -> bool:
    """Whether the rule plans deliveries ahead over its calendar (an active reminder or
    follow-up); re-planning any other cancels what it has pending."""
    return rule.is_active and not rule.deleted and rule.notification_type in SCHEDULED_TYPES


async def _rule_page(tx: Tx, job: Job, rule: Any, now: datetime) -> tuple[bool, bool]:
    """One page of a rule's re-planning; whether it was the last, and whether something
    due to send was planned."""
    await store.lock_calendar(tx, rule.calendar_id)
    job.pages += 1
    if not plans_ahead(rule):
        # Nothing of it is planned ahead any more: cancel what is pending, a page at a time.
        if rule.deleted:
            reason, statement = Reason.RULE_DELETED, _OF_RULE
        elif not rule.is_active:
            reason, statement = Reason.RULE_DEACTIVATED, _OF_RULE
        else:
            reason, statement = Reason.RULE_CHANGED, _OF_RULE_SCHEDULED
        [found] = await tx.fetch((statement, {"owner": rule.id, "page": PAGE}))
        lifecycle.cancel(tx, reason, [row.id for row in found], now)
        job.items += len(found)
        return len(found) < PAGE, False

    page = await page_of(tx, rule, now, job.cursor)
    due = False
    if page:
        people = await store.people(tx, rule.location_id, [a.contact_id for a in page])
        due = await store.plan_rule_page(tx, page, rule, people, now, fresh=job.fresh)
        job.cursor = cursor_after(page)
    job.items += len(page)
    return len(page) < PAGE, due


def cursor_after(page: Sequence[Any]) -> str:
    """The cursor of the page after ``page`` (see :func:`page_of`)."""
    last = page[-1]
    return f"{last.start_at.isoformat()}|{last.id}"


async def page_of(
    reader: Reader, rule: Any, now: datetime, cursor: str, size: int | None = None
) -> list[Any]:
    """The next page of appointments the rule plans ahead for, in start order (after
    ``cursor``: "" for the first page)."""
    reminder = rule.notification_type == NotificationType.REMINDER
    if reminder:
        since = now
    else:
        longest = max((offset_seconds(e) for e in rule.after_time), default=0.0)
        since = now - timedelta(seconds=longest) - DEADLINE
    values: dict[str, Any] = {"calendar_id": rule.calendar_id, "since": since, "page": size or PAGE}
    if cursor:
        start, _, last_id = cursor.partition("|")
        values.update(at=datetime.fromisoformat(start), last_id=last_id)
    [found] = await reader.fetch((_PAGES[(reminder, bool(cursor))], values))
    return [row_of(r) for r in found]


async def _calendar_page(tx: Tx, job: Job, now: datetime) -> bool:
    await store.lock_calendar(tx, job.calendar_id)
    job.pages += 1
    [found] = await tx.fetch((_OF_CALENDAR, {"owner": job.calendar_id, "page": PAGE}))
    lifecycle.cancel(tx, Reason.CALENDAR_DELETED, [row.id for row in found], now)
    job.items += len(found)
    return len(found) < PAGE
