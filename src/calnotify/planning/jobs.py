"""Planning work proportional to a calendar's size, in pages (architecture principle 10).

Creating, editing, deactivating or deleting a reminder or follow-up rule re-plans every
future appointment of its calendar; deleting a calendar cancels everything it had pending.
Neither is done in one transaction: the request does the first page (at most
:data:`PAGE` appointments or deliveries) in its own transaction and, when more remain,
leaves a :class:`~calnotify.models.PlanningJob` row that the dispatcher works through a
page at a time, each page with its cursor in one short transaction. A crash or a stopped
service resumes at the last committed page; on PostgreSQL two workers never work on the
same job at once (the job row is locked for its page, ``SKIP LOCKED``).

While a rule's job runs, nothing stale is sent and nothing is lost: the rule's version
moved on, so its old deliveries meet the fence; one that comes due before its page was
re-planned is held back for a second (not skipped) as long as the rule's
``planned_version`` is behind its ``version``. Pages go in start order, so the
appointments that come first are re-planned first; a reminder whose due time passes
before its page is reached is planned ``skipped``/``late`` like any reminder planned late
(semantics §3), never silently dropped.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.clock import Clock
from calnotify.db.engine import Database
from calnotify.deliveries import lifecycle
from calnotify.deliveries.lifecycle import DeliveryStatus, Reason
from calnotify.ids import new_id
from calnotify.models import Appointment, Delivery, Notification, PlanningJob
from calnotify.models.delivery import Trigger
from calnotify.models.notification import NotificationType
from calnotify.models.planning_job import PlanningJobKind, PlanningJobStatus
from calnotify.notifications.rules import offset_seconds
from calnotify.planning.planner import (
    DEADLINE,
    SCHEDULED_TYPES,
    PagePlan,
    _people,
    lock_calendar,
    plan_rule_page,
    reconcile_rule_page,
    wake_dispatchers,
    write_rule_page,
)

# Appointments (or deliveries) per page: one page is one short write transaction (about
# 30 ms on SQLite for 100 appointments; bench/replan.py).
PAGE = 100


async def plan_rule_change(
    session: AsyncSession, rule: Notification, now: datetime, *, new: bool = False
) -> None:
    """Re-plan after a rule was created (``new``) or changed what its deliveries are
    planned from (receivers, channel, type, schedule, active, deleted).

    Its pending immediate sends are settled here (they are few: sent within seconds);
    its reminders and follow-ups over the calendar are re-planned a page at a time, the
    first page in this transaction.
    """
    await lock_calendar(session, rule.calendar_id)
    if rule.is_active and not rule.deleted:
        # Pending immediate sends keep going unless the rule now means something else.
        event = (Delivery.notification_id == rule.id, Delivery.trigger == Trigger.EVENT)
        await lifecycle.cancel(
            session,
            Reason.RULE_CHANGED,
            now,
            *event,
            (Delivery.channel != rule.channel)
            | (Delivery.receiver_type != rule.receiver_type)
            | (Delivery.notification_type != rule.notification_type),
        )
        await session.execute(
            update(Delivery)
            .where(
                *event,
                Delivery.status.in_(lifecycle.PENDING),
                Delivery.channel == rule.channel,
                Delivery.receiver_type == rule.receiver_type,
                Delivery.notification_type == rule.notification_type,
            )
            .values(notification_version=rule.version, updated_at=now)
        )
    # A newer change of the rule takes over from any job still planning an older one.
    await session.execute(
        update(PlanningJob)
        .where(
            PlanningJob.notification_id == rule.id,
            PlanningJob.status == PlanningJobStatus.PENDING,
        )
        .values(status=PlanningJobStatus.SUPERSEDED, updated_at=now, finished_at=now)
    )
    job = _new_job(PlanningJobKind.RULE, rule.location_id, rule.calendar_id, now, rule=rule)
    job.fresh = new
    if await _rule_page(session, job, rule, now):
        rule.planned_version = rule.version
        return
    rule.planned_version = min(rule.planned_version, rule.version - 1)
    session.add(job)
    wake_dispatchers(session)


async def cancel_for_calendar(
    session: AsyncSession, location_id: str, calendar_id: str, now: datetime
) -> None:
    """A deleted calendar's pending deliveries are cancelled (the fence already stops them)."""
    job = _new_job(PlanningJobKind.CALENDAR, location_id, calendar_id, now)
    if not await _calendar_page(session, job, now):
        session.add(job)
        wake_dispatchers(session)


async def run_jobs(db: Database, clock: Clock, *, pages: int = 50) -> int:
    """Work through pending jobs, one page per short write transaction; the pages done.

    A page of appointments is worked out from reads first, outside the write lock; the
    write transaction then only checks that nothing moved meanwhile (the job's cursor,
    the rule's version, each appointment's version: one changed since was re-planned by
    its own change and is left out) and writes.
    """
    done = 0
    while done < pages:
        prepared = await _prepare(db, clock.now())
        if prepared is None:
            break
        async with db.session() as session:
            query = select(PlanningJob).where(
                PlanningJob.id == prepared.job_id,
                PlanningJob.status == PlanningJobStatus.PENDING,
            )
            if not db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            job = await session.scalar(query)
            if job is not None and job.cursor == prepared.cursor:
                await _run_page(session, job, clock.now(), prepared)
        done += 1
        await asyncio.sleep(0)  # let other writers in between pages
    return done


@dataclass
class _Prepared:
    job_id: str
    cursor: str  # where the job stood when the page was worked out
    plan: PagePlan | None = None  # None: the page is done in the write transaction
    next_cursor: str = ""
    count: int = 0


async def _prepare(db: Database, now: datetime) -> _Prepared | None:
    async with db.session(write=False) as reader:
        job = await reader.scalar(
            select(PlanningJob)
            .where(PlanningJob.status == PlanningJobStatus.PENDING)
            .order_by(PlanningJob.created_at, PlanningJob.id)
            .limit(1)
        )
        if job is None:
            return None
        prepared = _Prepared(job.id, job.cursor)
        if job.kind != PlanningJobKind.RULE:
            return prepared
        rule = await reader.get(Notification, job.notification_id)
        if rule is None or rule.version != job.notification_version or not _plans_ahead(rule):
            return prepared
        page = await _page_of(reader, job, rule, now)
        people = await _people(reader, rule.location_id, [a.contact_id for a in page])
        prepared.plan = await plan_rule_page(reader, page, rule, people, now, fresh=job.fresh)
        prepared.next_cursor = _cursor_after(page, job.cursor)
        prepared.count = len(page)
        return prepared


async def jobs_of_rule(session: AsyncSession, rule_id: str, limit: int = 10) -> list[PlanningJob]:
    rows = await session.scalars(
        select(PlanningJob)
        .where(PlanningJob.notification_id == rule_id)
        # Newest first; of jobs made in one instant, the pending one (a rule has at most
        # one: a newer change supersedes the older) is the newer.
        .order_by(
            PlanningJob.created_at.desc(),
            case((PlanningJob.status == PlanningJobStatus.PENDING, 0), else_=1),
            PlanningJob.id.desc(),
        )
        .limit(limit)
    )
    return list(rows)


# --- pages ----------------------------------------------------------------------------------


def _new_job(
    kind: PlanningJobKind,
    location_id: str,
    calendar_id: str,
    now: datetime,
    *,
    rule: Notification | None = None,
) -> PlanningJob:
    return PlanningJob(
        id=new_id(),
        location_id=location_id,
        calendar_id=calendar_id,
        notification_id=rule.id if rule else "",
        notification_version=rule.version if rule else 0,
        kind=kind,
        fresh=False,
        status=PlanningJobStatus.PENDING,
        cursor="",
        pages=0,
        items=0,
        created_at=now,
        updated_at=now,
    )


async def _run_page(
    session: AsyncSession, job: PlanningJob, now: datetime, prepared: _Prepared | None = None
) -> None:
    job.updated_at = now
    if job.kind == PlanningJobKind.RULE:
        rule = await session.get(Notification, job.notification_id)
        if rule is None or rule.version != job.notification_version:
            job.status, job.finished_at = PlanningJobStatus.SUPERSEDED, now
            return
        if prepared is not None and prepared.plan is not None:
            finished = await _write_prepared(session, job, rule, prepared, now)
        else:
            finished = await _rule_page(session, job, rule, now)
        if finished:
            rule.planned_version = rule.version
    else:
        finished = await _calendar_page(session, job, now)
    if finished:
        job.status, job.finished_at = PlanningJobStatus.DONE, now


async def _write_prepared(
    session: AsyncSession,
    job: PlanningJob,
    rule: Notification,
    prepared: _Prepared,
    now: datetime,
) -> bool:
    assert prepared.plan is not None
    await lock_calendar(session, rule.calendar_id)
    versions = prepared.plan.versions
    current: dict[str, int] = {}
    if versions:
        rows = await session.execute(
            select(Appointment.id, Appointment.version).where(Appointment.id.in_(list(versions)))
        )
        current = {row.id: row.version for row in rows}
    changed = {a for a, version in versions.items() if current.get(a) != version}
    await write_rule_page(session, prepared.plan.without(changed), rule, now)
    job.pages += 1
    job.items += prepared.count
    job.cursor = prepared.next_cursor
    return prepared.count < PAGE


def _plans_ahead(rule: Notification) -> bool:
    return rule.is_active and not rule.deleted and rule.notification_type in SCHEDULED_TYPES


async def _rule_page(
    session: AsyncSession, job: PlanningJob, rule: Notification, now: datetime
) -> bool:
    """One page of a rule's re-planning; whether it was the last."""
    await lock_calendar(session, rule.calendar_id)
    job.pages += 1
    if not _plans_ahead(rule):
        # Nothing of it is planned ahead any more: cancel what is pending, a page at a time.
        where: list[Any] = [
            Delivery.notification_id == rule.id,
            Delivery.status == DeliveryStatus.SCHEDULED,
        ]
        if rule.deleted:
            reason = Reason.RULE_DELETED
        elif not rule.is_active:
            reason = Reason.RULE_DEACTIVATED
        else:
            reason = Reason.RULE_CHANGED
            where.append(Delivery.trigger == Trigger.SCHEDULE)
        ids = list((await session.scalars(select(Delivery.id).where(*where).limit(PAGE))).all())
        if ids:
            await lifecycle.cancel(session, reason, now, Delivery.id.in_(ids))
        job.items += len(ids)
        return len(ids) < PAGE

    page = await _page_of(session, job, rule, now)
    if page:
        people = await _people(session, rule.location_id, [a.contact_id for a in page])
        await reconcile_rule_page(session, page, rule, people, now, fresh=job.fresh)
    job.cursor = _cursor_after(page, job.cursor)
    job.items += len(page)
    return len(page) < PAGE


async def _page_of(
    session: AsyncSession, job: PlanningJob, rule: Notification, now: datetime
) -> list[Appointment]:
    """The next page of appointments the rule plans ahead for, in start order."""
    query = select(Appointment).where(
        Appointment.calendar_id == rule.calendar_id,
        Appointment.deleted.is_(False),
        Appointment.rrule == "",  # a series' master: its occurrences are planned instead
    )
    if rule.notification_type == NotificationType.REMINDER:
        query = query.where(Appointment.start_at > now)
    else:
        longest = max((offset_seconds(e) for e in rule.after_time), default=0.0)
        query = query.where(Appointment.end_at > now - timedelta(seconds=longest) - DEADLINE)
    if job.cursor:
        start, _, last_id = job.cursor.partition("|")
        after = datetime.fromisoformat(start)
        query = query.where(
            # The first condition bounds the index range; the second breaks ties.
            Appointment.start_at >= after,
            or_(
                Appointment.start_at > after,
                and_(Appointment.start_at == after, Appointment.id > last_id),
            ),
        )
    query = query.order_by(Appointment.start_at, Appointment.id).limit(PAGE)
    return list((await session.scalars(query)).all())


def _cursor_after(page: list[Appointment], cursor: str) -> str:
    if not page:
        return cursor
    last = page[-1]
    return f"{last.start_at.isoformat()}|{last.id}"


async def _calendar_page(session: AsyncSession, job: PlanningJob, now: datetime) -> bool:
    await lock_calendar(session, job.calendar_id)
    job.pages += 1
    ids = list(
        (
            await session.scalars(
                select(Delivery.id)
                .where(
                    Delivery.calendar_id == job.calendar_id,
                    Delivery.status == DeliveryStatus.SCHEDULED,
                )
                .limit(PAGE)
            )
        ).all()
    )
    if ids:
        await lifecycle.cancel(session, Reason.CALENDAR_DELETED, now, Delivery.id.in_(ids))
    job.items += len(ids)
    return len(ids) < PAGE
