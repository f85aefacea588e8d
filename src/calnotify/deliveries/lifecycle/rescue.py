"""Deliveries whose lease expired, taken back; when the next scheduled one may run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, case, func, select, update

from calnotify.db.engine import Database
from calnotify.db.gate import Priority
from calnotify.db.statements import Statement
from calnotify.deliveries.lifecycle.columns import SCHEDULED, SENDING, TABLE, D
from calnotify.deliveries.lifecycle.sending import ATTEMPT
from calnotify.deliveries.states import (
    AttemptOutcome,
    DeliveryStatus,
    Reason,
)
from calnotify.ids import new_id

EXPIRED = Statement(
    select(D.id, D.attempts, D.handed_over_at, D.deadline_at)
    .where(D.status == SENDING, D.lease_until < bindparam("now"))
    .order_by(D.lease_until)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
LOST = (
    "lease expired during the attempt: the worker stopped or lost its lease; the provider "
    "may have received the message"
)


def _taken_back(*, finished: bool) -> Statement:
    ended = and_(
        D.id.in_(bindparam("ids", expanding=True)),
        D.status == SENDING,
        D.lease_until < bindparam("now"),
    )
    if finished:
        values: dict[str, Any] = {
            "status": DeliveryStatus.FAILED.value,
            "reason": Reason.ABANDONED.value,
            "last_error": LOST,
        }
    else:
        values = {"status": SCHEDULED, "reason": Reason.RETRYING.value, "run_at": bindparam("now")}
        values["last_error"] = case((D.handed_over_at.is_not(None), LOST), else_=D.last_error)
    return Statement(
        update(TABLE)
        .where(ended)
        .values(
            claim_token=None,
            lease_until=None,
            handed_over_at=None,
            updated_at=bindparam("now"),
            **values,
        )
        .returning(D.id)
    )


ABANDON = _taken_back(finished=True)
REQUEUE = _taken_back(finished=False)


@dataclass(frozen=True)
class Rescued:
    requeued: int
    abandoned: int


async def rescue(db: Database, now: datetime, max_attempts: int, limit: int = 500) -> Rescued:
    """Take back deliveries whose lease expired (their worker died or lost them).

    An attempt that was in progress is recorded with an unknown outcome (the provider may
    have the message). A delivery that has used up its attempts, or is past its deadline,
    ends ``failed``; the others are queued again at once.
    """
    async with db.transaction(Priority.SEND) as tx:
        [expired] = await tx.fetch((EXPIRED, {"now": now, "limit": limit}))
        if not expired:
            return Rescued(0, 0)
        lost = [
            {
                "id": new_id(),
                "delivery_id": d.id,
                "number": d.attempts,
                "at": d.handed_over_at,
                "outcome": AttemptOutcome.UNKNOWN.value,
                "error": LOST,
                "provider_id": "",
            }
            for d in expired
            if d.handed_over_at is not None
        ]
        tx.write_many(ATTEMPT, lost)
        done = [d.id for d in expired if d.attempts >= max_attempts or d.deadline_at <= now]
        again = [d.id for d in expired if d.id not in set(done)]
        abandoned, requeued = await tx.fetch(
            (ABANDON, {"ids": done, "now": now}), (REQUEUE, {"ids": again, "now": now})
        )
    return Rescued(len(requeued), len(abandoned))


NEXT_RUN = Statement(select(func.min(D.run_at)).where(D.status == SCHEDULED))
NEXT_RUN_OF_OTHERS = Statement(
    select(D.run_at)
    .where(D.status == SCHEDULED, D.location_id.not_in(bindparam("skip", expanding=True)))
    .order_by(D.run_at)
    .limit(1)
)


async def next_run_at(db: Database, skip: Sequence[str] = ()) -> datetime | None:
    """When the earliest scheduled delivery (of a location not in ``skip``) may be claimed."""
    if skip:
        [found] = await db.fetch((NEXT_RUN_OF_OTHERS, {"skip": list(skip)}))
        return found[0].run_at if found else None
    [[row]] = await db.fetch((NEXT_RUN, {}))
    value: datetime | None = row[0]
    return value
