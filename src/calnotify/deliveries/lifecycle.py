"""The delivery lifecycle: statuses, reasons, and every transition between them.

This module is the only code that writes a delivery's ``status``, ``reason`` or
``attempts``. Each transition is a named function whose SQL only touches rows in the states
it may leave (:data:`TRANSITIONS`); an in-memory transition outside that table raises
:class:`IllegalTransition`. docs/engine.md shows the same table, and a test holds the two
together.

An attempt is counted when the message is handed over (:func:`hand_over`, in the database,
before the provider is called), so no fault (an exception, a crash, an expired lease) can
make a message go out more often than the maximum attempts: a lease that expires with an
attempt in progress is recorded as an attempt of unknown outcome, and once the maximum is
reached, a rescue ends the delivery ``failed`` (``abandoned``) instead of queueing it again.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Table, bindparam, case, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.db.engine import Database
from calnotify.ids import new_id
from calnotify.models import Delivery, DeliveryAttempt


class DeliveryStatus(StrEnum):
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


class Reason(StrEnum):
    """Why a delivery is where it is (``reason`` on the wire)."""

    NONE = ""
    # skipped
    LATE = "late"
    DND = "dnd"
    NO_ADDRESS = "no_address"
    INACTIVE = "inactive"
    STALE = "stale"
    # scheduled again after a retryable error
    RETRYING = "retrying"
    # failed
    PERMANENT = "permanent"
    RETRIES_EXHAUSTED = "retries_exhausted"
    DEADLINE = "deadline"
    RENDER = "render"
    ABANDONED = "abandoned"
    ERROR = "error"
    # failed, as the provider reported after accepting it (Twilio status callbacks)
    UNDELIVERED = "undelivered"
    PROVIDER_FAILED = "failed"
    # cancelled: what changed since it was planned
    RESCHEDULED = "rescheduled"
    SUPERSEDED = "superseded"
    APPOINTMENT_NEW = "appointment_new"
    APPOINTMENT_CONFIRMED = "appointment_confirmed"
    APPOINTMENT_CANCELLED = "appointment_cancelled"
    APPOINTMENT_SHOWED = "appointment_showed"
    APPOINTMENT_NOSHOW = "appointment_noshow"
    APPOINTMENT_INVALID = "appointment_invalid"
    APPOINTMENT_RESTORED = "appointment_restored"
    APPOINTMENT_DELETED = "appointment_deleted"
    CALENDAR_CHANGED = "calendar_changed"
    CALENDAR_DELETED = "calendar_deleted"
    RULE_CHANGED = "rule_changed"
    RULE_DELETED = "rule_deleted"
    RULE_DEACTIVATED = "rule_deactivated"


class AttemptOutcome(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    # The worker lost the attempt (crash, expired lease): the provider may have the message.
    UNKNOWN = "unknown"


class IllegalTransition(RuntimeError):
    pass


PENDING = (DeliveryStatus.SCHEDULED, DeliveryStatus.SENDING)
_S = DeliveryStatus

# transition: (states it leaves, states it reaches). None is "no row yet".
TRANSITIONS: dict[str, tuple[tuple[DeliveryStatus | None, ...], tuple[DeliveryStatus, ...]]] = {
    "plan": ((None,), (_S.SCHEDULED, _S.SKIPPED)),
    "replan": ((_S.CANCELLED,), (_S.SCHEDULED, _S.SKIPPED)),
    "cancel": ((_S.SCHEDULED,), (_S.CANCELLED,)),
    "claim": ((_S.SCHEDULED,), (_S.SENDING,)),
    "hand_over": ((_S.SENDING,), (_S.SENDING,)),
    "renew": ((_S.SENDING,), (_S.SENDING,)),
    "rescue": ((_S.SENDING,), (_S.SCHEDULED, _S.FAILED)),
    "record_sent": ((_S.SENDING,), (_S.SENT,)),
    "record_retry": ((_S.SENDING,), (_S.SCHEDULED,)),
    "release": ((_S.SENDING,), (_S.SCHEDULED,)),
    "record_failed": ((_S.SENDING,), (_S.FAILED,)),
    "record_skipped": ((_S.SENDING,), (_S.SKIPPED,)),
    "provider_update": ((_S.SENT,), (_S.SENT, _S.FAILED)),
}


def check(transition: str, source: str | None, target: str) -> None:
    """Raise :class:`IllegalTransition` unless ``transition`` may take ``source`` to ``target``."""
    sources, targets = TRANSITIONS[transition]
    if source not in sources or target not in targets:
        raise IllegalTransition(f"{transition}: {source} → {target} is not allowed")


def _table() -> Table:
    table: Table = Delivery.__table__  # type: ignore[assignment]
    return table


# --- planning -------------------------------------------------------------------------------


def planned(skip: Reason | None) -> dict[str, Any]:
    """The lifecycle columns of a delivery as the planner writes it (``plan`` / ``replan``)."""
    status = DeliveryStatus.SKIPPED if skip is not None else DeliveryStatus.SCHEDULED
    check("plan", None, status)
    return {
        "status": status,
        "reason": skip.value if skip is not None else "",
        "attempts": 0,
        "handed_over_at": None,
        "lease_until": None,
        "claim_token": None,
        "last_error": "",
    }


async def replan(session: AsyncSession, delivery_id: str, values: dict[str, Any]) -> None:
    """A cancelled delivery wanted again (same key): planned anew, never a second row."""
    check("replan", DeliveryStatus.CANCELLED, values["status"])
    await session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.status == DeliveryStatus.CANCELLED)
        .values(**values)
    )


async def cancel(session: AsyncSession, reason: Reason | str, now: datetime, *where: Any) -> None:
    """Cancel the scheduled deliveries matching ``where`` (in-flight ones meet the fence)."""
    try:
        known = Reason(reason)
    except ValueError:
        raise IllegalTransition(f"cancel: unknown reason {reason!r}") from None
    await session.execute(
        update(Delivery)
        .where(Delivery.status == DeliveryStatus.SCHEDULED, *where)
        .values(status=DeliveryStatus.CANCELLED, reason=known.value, updated_at=now)
        .execution_options(synchronize_session=False)
    )


# --- dispatching ----------------------------------------------------------------------------


async def claim(
    db: Database,
    now: datetime,
    limit: int,
    lease: timedelta,
    *,
    skip_locations: Sequence[str] = (),
    capped_locations: Sequence[str] = (),
    cap: int = 4,
) -> Sequence[Delivery]:
    """Due ``scheduled`` rows become ``sending`` under a new claim token and lease.

    Locations take turns: the batch holds each location's earliest due rows, round-robin,
    so one location with thousands due cannot fill every batch; ``skip_locations`` (the
    caller's busy ones) are left for later or for other workers, and of each of
    ``capped_locations`` (the caller's recently slow ones) at most ``cap`` rows are taken.
    PostgreSQL locks the candidates with ``FOR UPDATE SKIP LOCKED``; SQLite's write
    transaction is exclusive.
    """
    token = secrets.token_hex(16)
    capped = list(dict.fromkeys(capped_locations))[:MAX_CAPPED]
    # The batch's own candidates leave the capped locations out (their many old rows would
    # otherwise crowd everyone else out of the candidate window); each capped location
    # adds its few earliest rows.
    statements = [_claim_statement(db, now, limit, [*skip_locations, *capped], token, lease)]
    statements += [_claim_statement(db, now, cap, (), token, lease, only=loc) for loc in capped]
    claimed: list[Delivery] = []
    async with db.session() as session:
        for statement in statements:
            claimed.extend((await session.scalars(statement)).all())
    return sorted(claimed, key=lambda d: (d.run_at, d.id))


# The capped locations one claim looks at, at most (each is one more small statement).
MAX_CAPPED = 16


def _claim_statement(
    db: Database,
    now: datetime,
    limit: int,
    skip: Sequence[str],
    token: str,
    lease: timedelta,
    *,
    only: str | None = None,
) -> Any:
    candidates = (
        select(Delivery.id, Delivery.location_id, Delivery.run_at)
        .where(Delivery.status == DeliveryStatus.SCHEDULED, Delivery.run_at <= now)
        .order_by(Delivery.run_at)
        .limit(limit * 4)
    )
    if skip:
        candidates = candidates.where(Delivery.location_id.not_in(list(skip)))
    if only is not None:
        candidates = candidates.where(Delivery.location_id == only)
    if not db.is_sqlite:
        candidates = candidates.with_for_update(skip_locked=True)
    due = candidates.cte("due")
    turn = (
        func.row_number()
        .over(partition_by=due.c.location_id, order_by=(due.c.run_at, due.c.id))
        .label("turn")
    )
    ranked = select(due.c.id, due.c.run_at, turn).subquery("ranked")
    chosen = select(ranked.c.id).order_by(ranked.c.turn, ranked.c.run_at).limit(limit)
    return (
        update(Delivery)
        .where(
            Delivery.id.in_(chosen.scalar_subquery()), Delivery.status == DeliveryStatus.SCHEDULED
        )
        .values(
            status=DeliveryStatus.SENDING,
            claim_token=token,
            lease_until=now + lease,
            handed_over_at=None,
            updated_at=now,
        )
        .returning(Delivery)
        .execution_options(synchronize_session=False)
    )


def released(delivery: Delivery) -> Outcome:
    """The outcome of a claimed delivery given back unsent (``release``)."""
    return Outcome(delivery, DeliveryStatus.SCHEDULED, released=True)


async def renew(db: Database, ids: Sequence[str], token: str, until: datetime) -> set[str]:
    """Extend the lease of the rows this claim still holds; the ids it still holds."""
    if not ids:
        return set()
    async with db.session() as session:
        result = await session.execute(
            update(Delivery)
            .where(
                Delivery.id.in_(ids),
                Delivery.claim_token == token,
                Delivery.status == DeliveryStatus.SENDING,
            )
            .values(lease_until=until)
            .returning(Delivery.id)
            .execution_options(synchronize_session=False)
        )
        return set(result.scalars())


async def hand_over(
    db: Database,
    ids: Sequence[str],
    token: str,
    now: datetime,
    until: datetime,
    max_attempts: int,
) -> set[str]:
    """Count an attempt for each message about to be given to its provider; the ids that may
    go. A row this claim no longer holds, or one that has used up its attempts, may not."""
    if not ids:
        return set()
    async with db.session() as session:
        result = await session.execute(
            update(Delivery)
            .where(
                Delivery.id.in_(ids),
                Delivery.claim_token == token,
                Delivery.status == DeliveryStatus.SENDING,
                Delivery.attempts < max_attempts,
            )
            .values(attempts=Delivery.attempts + 1, handed_over_at=now, lease_until=until)
            .returning(Delivery.id)
            .execution_options(synchronize_session=False)
        )
        return set(result.scalars())


@dataclass
class Outcome:
    """How one claimed delivery ended this round; :func:`record` writes it."""

    delivery: Delivery
    status: DeliveryStatus
    reason: Reason | str = Reason.NONE
    error: str = ""
    handed_over: bool = False  # the provider was called: this is an attempt
    provider: str = ""
    provider_id: str = ""
    subject: str = ""
    body: str = ""
    recipient: str = ""
    sender: str = ""
    retry_at: datetime | None = None
    at: datetime | None = None  # when the provider answered
    # Given back unsent, never handed over (a stopping or overtaxed dispatcher): scheduled
    # again as it was, no attempt counted.
    released: bool = False

    @property
    def transition(self) -> str:
        if self.released:
            return "release"
        return {
            DeliveryStatus.SENT: "record_sent",
            DeliveryStatus.SCHEDULED: "record_retry",
            DeliveryStatus.FAILED: "record_failed",
            DeliveryStatus.SKIPPED: "record_skipped",
        }.get(self.status, "record_" + self.status)


async def record(db: Database, outcomes: Sequence[Outcome], now: datetime) -> int:
    """Write the outcomes of one claim, and an attempt row for each hand-over; the number of
    rows written. Guarded by the claim token: a worker that lost its lease writes nothing."""
    if not outcomes:
        return 0
    for o in outcomes:
        check(o.transition, DeliveryStatus.SENDING, o.status)
    table = _table()
    statement = (
        update(table)
        .where(
            table.c.id == bindparam("b_id"),
            table.c.claim_token == bindparam("b_token"),
            table.c.status == DeliveryStatus.SENDING.value,
        )
        .values(
            status=bindparam("b_status"),
            reason=bindparam("b_reason"),
            last_error=bindparam("b_error"),
            sent_at=bindparam("b_sent_at"),
            run_at=bindparam("b_run_at"),
            provider=bindparam("b_provider"),
            provider_message_id=bindparam("b_message_id"),
            subject=bindparam("b_subject"),
            body=bindparam("b_body"),
            recipient=bindparam("b_recipient"),
            sender=bindparam("b_sender"),
            claim_token=None,
            lease_until=None,
            handed_over_at=None,
            updated_at=now,
        )
    )
    rows: list[dict[str, Any]] = []
    for o in outcomes:
        d = o.delivery
        sent = o.status == DeliveryStatus.SENT
        if o.released:
            o.reason, o.error = d.reason, d.last_error
        rows.append(
            {
                "b_id": d.id,
                "b_token": d.claim_token,
                "b_status": o.status.value,
                "b_reason": str(o.reason),
                # A sent delivery shows no old error as current.
                "b_error": "" if sent else (o.error or d.last_error),
                "b_sent_at": (o.at or now) if sent else None,
                "b_run_at": o.retry_at or d.run_at,
                "b_provider": o.provider or d.provider,
                "b_message_id": o.provider_id or d.provider_message_id,
                "b_subject": o.subject or d.subject,
                "b_body": o.body or d.body,
                "b_recipient": o.recipient or d.recipient,
                "b_sender": o.sender or d.sender,
            }
        )
    async with db.session() as session:
        # The rows this claim still holds; locked on PostgreSQL until the write, so a rescue
        # by another worker cannot slip in between.
        mine = select(Delivery.id, Delivery.claim_token).where(
            Delivery.id.in_([o.delivery.id for o in outcomes]),
            Delivery.status == DeliveryStatus.SENDING,
        )
        if not db.is_sqlite:
            mine = mine.with_for_update()
        ours = {o.delivery.id: o.delivery.claim_token for o in outcomes}
        held = {
            row.id
            for row in await session.execute(mine)
            if row.claim_token is not None and row.claim_token == ours.get(row.id)
        }
        rows = [r for r in rows if r["b_id"] in held]
        if not rows:
            return 0
        await session.execute(statement, rows)
        attempts = [
            _attempt_row(o, now) for o in outcomes if o.handed_over and o.delivery.id in held
        ]
        if attempts:
            await session.execute(insert(DeliveryAttempt), attempts)
    return len(rows)


def _attempt_row(o: Outcome, now: datetime) -> dict[str, Any]:
    outcome = {
        DeliveryStatus.SENT: AttemptOutcome.SENT,
        DeliveryStatus.SCHEDULED: AttemptOutcome.RETRY,
    }.get(o.status, AttemptOutcome.FAILED)
    return {
        "id": new_id(),
        "delivery_id": o.delivery.id,
        "number": o.delivery.attempts,
        "at": o.at or now,
        "outcome": outcome.value,
        "error": o.error[:2000] if outcome != AttemptOutcome.SENT else "",
        "provider_id": o.provider_id[:255],
    }


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
    async with db.session() as session:
        query = (
            select(Delivery)
            .where(Delivery.status == DeliveryStatus.SENDING, Delivery.lease_until < now)
            .order_by(Delivery.lease_until)
            .limit(limit)
        )
        if not db.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        expired = list(await session.scalars(query))
        if not expired:
            return Rescued(0, 0)
        lost = "lease expired during the attempt: the worker stopped or lost its lease; the "
        lost += "provider may have received the message"
        attempts = [
            {
                "id": new_id(),
                "delivery_id": d.id,
                "number": d.attempts,
                "at": d.handed_over_at,
                "outcome": AttemptOutcome.UNKNOWN.value,
                "error": lost,
                "provider_id": "",
            }
            for d in expired
            if d.handed_over_at is not None
        ]
        if attempts:
            await session.execute(insert(DeliveryAttempt), attempts)
        ids = [d.id for d in expired]
        finished = or_(Delivery.attempts >= max_attempts, Delivery.deadline_at <= now)
        base = update(Delivery).where(
            Delivery.id.in_(ids),
            Delivery.status == DeliveryStatus.SENDING,
            Delivery.lease_until < now,
        )
        cleared = {"claim_token": None, "lease_until": None, "handed_over_at": None}
        abandoned = await session.execute(
            base.where(finished)
            .values(
                status=DeliveryStatus.FAILED,
                reason=Reason.ABANDONED.value,
                last_error=lost,
                updated_at=now,
                **cleared,
            )
            .execution_options(synchronize_session=False)
        )
        requeued = await session.execute(
            base.where(~finished)
            .values(
                status=DeliveryStatus.SCHEDULED,
                reason=Reason.RETRYING.value,
                last_error=case(
                    (Delivery.handed_over_at.is_not(None), lost), else_=Delivery.last_error
                ),
                run_at=now,
                updated_at=now,
                **cleared,
            )
            .execution_options(synchronize_session=False)
        )
    return Rescued(
        int(getattr(requeued, "rowcount", 0) or 0), int(getattr(abandoned, "rowcount", 0) or 0)
    )


async def next_run_at(db: Database) -> datetime | None:
    """When the earliest scheduled delivery may be claimed."""
    async with db.session(write=False) as session:
        return await session.scalar(
            select(func.min(Delivery.run_at)).where(Delivery.status == DeliveryStatus.SCHEDULED)
        )


# --- after sending --------------------------------------------------------------------------


async def provider_update(
    session: AsyncSession,
    delivery: Delivery,
    provider_status: str,
    now: datetime,
    *,
    failed_error: str = "",
) -> None:
    """A provider's later report on a sent message (Twilio status callbacks)."""
    values: dict[str, Any] = {
        "provider_status": provider_status,
        "provider_status_at": now,
        "updated_at": now,
    }
    if failed_error:
        check("provider_update", delivery.status, DeliveryStatus.FAILED)
        reason = Reason(provider_status)  # undelivered or failed
        values.update(status=DeliveryStatus.FAILED, reason=reason.value, last_error=failed_error)
    await session.execute(update(Delivery).where(Delivery.id == delivery.id).values(**values))


def attempts_of(ids: Iterable[str]) -> Any:
    """The attempts of the given deliveries, in order (for the deliveries API)."""
    return (
        select(DeliveryAttempt)
        .where(DeliveryAttempt.delivery_id.in_(list(ids)))
        .order_by(DeliveryAttempt.delivery_id, DeliveryAttempt.number, DeliveryAttempt.at)
    )
