"""After a restore: what may have been sent since the backup was taken is not sent again.

A backup holds the deliveries as they were when it was taken. Those that came due between
then and the restore may have been sent by the database that was replaced, and so may those
that were being sent when the backup was taken; the restored database would send them all
again. ``skip_restored`` ends them ``skipped``/``restored``, a page of rows per transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, bindparam, func, or_, select, update

from calnotify.db.engine import Database
from calnotify.db.statements import Statement
from calnotify.deliveries.lifecycle.columns import SCHEDULED, SENDING, TABLE, D
from calnotify.deliveries.states import DeliveryStatus, Reason, check

PAGE = 500

_DUE_BETWEEN = and_(
    D.status == SCHEDULED, D.run_at >= bindparam("since"), D.run_at <= bindparam("now")
)
# Due (or due for a retry) between the backup and the restore: the partial index on run_at.
_MISSED = Statement(
    select(D.id)
    .where(_DUE_BETWEEN)
    .order_by(D.run_at)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
_IN_FLIGHT = Statement(
    select(D.id)
    .where(D.status == SENDING)
    .order_by(D.lease_until)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
_SKIP = Statement(
    update(TABLE)
    .where(D.id.in_(bindparam("ids", expanding=True)), or_(_DUE_BETWEEN, D.status == SENDING))
    .values(
        status=DeliveryStatus.SKIPPED.value,
        reason=Reason.RESTORED.value,
        claim_token=None,
        lease_until=None,
        handed_over_at=None,
        updated_at=bindparam("now"),
    )
)
_COUNT = select(func.count().label("n")).select_from(TABLE)
_COUNT_MISSED = Statement(_COUNT.where(_DUE_BETWEEN))
_COUNT_IN_FLIGHT = Statement(_COUNT.where(D.status == SENDING))
_COUNT_LATER = Statement(_COUNT.where(D.status == SCHEDULED, D.run_at > bindparam("now")))


@dataclass(frozen=True, slots=True)
class Missed:
    """What a restore found: deliveries due between the backup and the restore, those that
    were being sent when the backup was taken, and those still to come."""

    due: int
    in_flight: int
    later: int


async def missed(db: Database, since: datetime, now: datetime) -> Missed:
    """Count what :func:`skip_restored` would skip, changing nothing."""
    due, in_flight, later = await db.fetch(
        (_COUNT_MISSED, {"since": since, "now": now}),
        (_COUNT_IN_FLIGHT, {}),
        (_COUNT_LATER, {"now": now}),
    )
    return Missed(due[0][0], in_flight[0][0], later[0][0])


async def skip_restored(db: Database, since: datetime, now: datetime) -> Missed:
    """End ``skipped``/``restored`` every delivery still scheduled whose time to be sent lies
    between ``since`` (the backup's instant) and ``now``, and every one still being sent;
    a page of :data:`PAGE` rows per transaction. What it skipped, and what is still to come."""
    check("skip_restored", DeliveryStatus.SCHEDULED, DeliveryStatus.SKIPPED)
    check("skip_restored", DeliveryStatus.SENDING, DeliveryStatus.SKIPPED)
    due = await _skip_pages(db, _MISSED, since, now)
    in_flight = await _skip_pages(db, _IN_FLIGHT, since, now)
    [[(later,)]] = await db.fetch((_COUNT_LATER, {"now": now}))
    return Missed(due, in_flight, later)


async def _skip_pages(db: Database, page: Statement, since: datetime, now: datetime) -> int:
    skipped = 0
    while True:
        async with db.transaction() as tx:
            [rows] = await tx.fetch((page, {"since": since, "now": now, "limit": PAGE}))
            ids = [row.id for row in rows]
            if ids:
                tx.write(_SKIP, {"ids": ids, "since": since, "now": now})
        skipped += len(ids)
        if len(ids) < PAGE:
            return skipped
