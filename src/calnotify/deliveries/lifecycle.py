"""The delivery lifecycle: every transition of a delivery's status (docs/engine.md).

This module is the only code that writes a delivery's ``status``, ``reason`` or
``attempts``. Each transition is a named function whose SQL only touches rows in the states
it may leave (:data:`~calnotify.deliveries.states.TRANSITIONS`); an in-memory transition
outside that table raises :class:`IllegalTransition`. docs/engine.md shows the same table,
and a test holds the two together.

An attempt is counted when the message is handed over (:func:`hand_over`, in the database,
before the provider is called), so no fault (an exception, a crash, an expired lease) can
make a message go out more often than the maximum attempts: a lease that expires with an
attempt in progress is recorded as an attempt of unknown outcome, and once the maximum is
reached, a rescue ends the delivery ``failed`` (``abandoned``) instead of queueing it again.

The dispatcher's transitions (claim, hand-over, renewal, record, rescue) are compiled
statements run in transactions at the gate's send priority: sends go before requests.
Each takes many rows at once; none is ever one transaction per message.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, case, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.db.engine import Database
from calnotify.db.gate import Priority
from calnotify.db.statements import Statement, table
from calnotify.db.tx import Tx
from calnotify.deliveries.states import (
    PENDING,
    TRANSITIONS,
    AttemptOutcome,
    DeliveryStatus,
    IllegalTransition,
    Reason,
    check,
    planned,
)
from calnotify.ids import new_id
from calnotify.models import Delivery, DeliveryAttempt

__all__ = [
    "PENDING",
    "TRANSITIONS",
    "AttemptOutcome",
    "DeliveryStatus",
    "IllegalTransition",
    "Outcome",
    "Reason",
    "check",
    "planned",
]

SENDING = DeliveryStatus.SENDING.value
SCHEDULED = DeliveryStatus.SCHEDULED.value
_TABLE = table(Delivery)
_D = _TABLE.c

# --- planning -------------------------------------------------------------------------------

_CANCEL = Statement(
    update(_TABLE)
    .where(_D.id.in_(bindparam("ids", expanding=True)), _D.status == SCHEDULED)
    .values(
        status=DeliveryStatus.CANCELLED.value,
        reason=bindparam("reason"),
        updated_at=bindparam("now"),
    )
)
_CANCEL_MATCHING = Statement(
    update(_TABLE)
    .where(
        _D.status == SCHEDULED,
        _D.notification_id == bindparam("notification_id"),
        _D.trigger == bindparam("trigger"),
        or_(
            _D.channel != bindparam("channel"),
            _D.receiver_type != bindparam("receiver_type"),
            _D.notification_type != bindparam("notification_type"),
        ),
    )
    .values(
        status=DeliveryStatus.CANCELLED.value,
        reason=bindparam("reason"),
        updated_at=bindparam("now"),
    )
)
_REPLAN_COLUMNS = (
    "status", "reason", "attempts", "handed_over_at", "lease_until", "claim_token",
    "last_error", "recipient", "due_at", "run_at", "deadline_at", "appointment_version",
    "notification_version", "updated_at",
)  # fmt: skip
_REPLAN = Statement(
    update(_TABLE)
    .where(_D.id == bindparam("b_id"), _D.status == DeliveryStatus.CANCELLED.value)
    .values({name: bindparam(name) for name in _REPLAN_COLUMNS})
)


def cancel(tx: Tx, reason: Reason | str, ids: Sequence[str], now: datetime) -> None:
    """Cancel the scheduled deliveries of ``ids`` (in-flight ones meet the fence)."""
    if ids:
        tx.write(_CANCEL, {"ids": list(ids), "reason": _known(reason), "now": now})


def cancel_changed_sends(tx: Tx, rule: Any, now: datetime) -> None:
    """Cancel a rule's pending immediate sends that no longer are what the rule sends (its
    channel, receivers or type changed)."""
    tx.write(
        _CANCEL_MATCHING,
        {
            "notification_id": rule.id,
            "trigger": "event",
            "channel": rule.channel,
            "receiver_type": rule.receiver_type,
            "notification_type": rule.notification_type,
            "reason": Reason.RULE_CHANGED.value,
            "now": now,
        },
    )


def replan(tx: Tx, rows: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Cancelled deliveries wanted again (same key): planned anew, never a second row."""
    for _, values in rows:
        check("replan", DeliveryStatus.CANCELLED, values["status"])
    tx.write_many(
        _REPLAN,
        [
            {**{n: values[n] for n in _REPLAN_COLUMNS}, "b_id": delivery_id}
            for delivery_id, values in rows
        ],
    )


def _known(reason: Reason | str) -> str:
    try:
        return Reason(reason).value
    except ValueError:
        raise IllegalTransition(f"cancel: unknown reason {reason!r}") from None


# --- claiming ---------------------------------------------------------------------------


def _claim(*, only: bool) -> Statement:
    """Due rows, each location's earliest first, round-robin, become ``sending``.

    Parameters: ``now``, ``window`` (candidates looked at), ``limit``, ``skip`` (locations
    left out) or ``only`` (the one location taken), ``token``, ``until``."""
    candidates = (
        select(_D.id, _D.location_id, _D.run_at)
        .where(_D.status == SCHEDULED, _D.run_at <= bindparam("now"))
        .order_by(_D.run_at)
        .limit(bindparam("window"))
        # PostgreSQL: workers claim disjoint rows; SQLite's writer is alone anyway.
        .with_for_update(skip_locked=True)
    )
    if only:
        candidates = candidates.where(_D.location_id == bindparam("only"))
    else:
        candidates = candidates.where(_D.location_id.not_in(bindparam("skip", expanding=True)))
    due = candidates.cte("due")
    turn = (
        func.row_number()
        .over(partition_by=due.c.location_id, order_by=(due.c.run_at, due.c.id))
        .label("turn")
    )
    ranked = select(due.c.id, due.c.run_at, turn).subquery("ranked")
    chosen = select(ranked.c.id).order_by(ranked.c.turn, ranked.c.run_at).limit(bindparam("limit"))
    return Statement(
        update(_TABLE)
        .where(_D.id.in_(chosen.scalar_subquery()), _D.status == SCHEDULED)
        .values(
            status=SENDING,
            claim_token=bindparam("token"),
            lease_until=bindparam("until"),
            handed_over_at=None,
            updated_at=bindparam("now"),
        )
        .returning(*CLAIMED)
    )


#: What a claim returns of each row: what sending it reads (not its content or history).
CLAIMED = [
    _D[name]
    for name in (
        "id", "location_id", "calendar_id", "appointment_id", "instance_id",
        "notification_id", "notification_type", "channel", "recipient_kind",
        "recipient_ref", "reason", "due_at", "run_at", "deadline_at", "attempts",
        "lease_until", "claim_token", "appointment_version", "notification_version",
        "last_error",
    )
]  # fmt: skip
CLAIM = _claim(only=False)
CLAIM_ONE_LOCATION = _claim(only=True)
# The capped locations one claim looks at, at most (each is one more small statement).
MAX_CAPPED = 16


async def claim(
    db: Database,
    now: datetime,
    limit: int,
    lease: timedelta,
    *,
    skip_locations: Sequence[str] = (),
    capped_locations: Sequence[str] = (),
    cap: int = 4,
) -> list[Any]:
    """Due ``scheduled`` rows become ``sending`` under a new claim token and lease; the rows
    claimed (every column of ``deliveries``, as named tuples), earliest first.

    Locations take turns: the batch holds each location's earliest due rows, round-robin,
    so one location with thousands due cannot fill every batch; ``skip_locations`` (the
    caller's busy ones) are left for later or for other workers, and of each of
    ``capped_locations`` (the caller's recently slow ones) at most ``cap`` rows are taken.
    """
    token = secrets.token_hex(16)
    capped = list(dict.fromkeys(capped_locations))[:MAX_CAPPED]
    common = {"now": now, "token": token, "until": now + lease}
    # The batch's own candidates leave the capped locations out (their many old rows would
    # otherwise crowd everyone else out of the candidate window); each capped location
    # adds its few earliest rows.
    reads: list[tuple[Statement, dict[str, Any]]] = [
        (
            CLAIM,
            {**common, "window": limit * 4, "limit": limit, "skip": [*skip_locations, *capped]},
        )
    ]
    reads += [
        (CLAIM_ONE_LOCATION, {**common, "window": cap, "limit": cap, "only": loc}) for loc in capped
    ]
    async with db.transaction(Priority.SEND) as tx:
        found = await tx.fetch(*reads)
    claimed = [row for rows in found for row in rows]
    return sorted(claimed, key=lambda d: (d.run_at, d.id))


# --- while sending ---------------------------------------------------------------------------

RENEW = Statement(
    update(_TABLE)
    .where(
        _D.id.in_(bindparam("ids", expanding=True)),
        _D.claim_token == bindparam("token"),
        _D.status == SENDING,
    )
    .values(lease_until=bindparam("until"))
    .returning(_D.id)
)

HAND_OVER = Statement(
    update(_TABLE)
    .where(
        _D.id.in_(bindparam("ids", expanding=True)),
        _D.claim_token == bindparam("token"),
        _D.status == SENDING,
        _D.attempts < bindparam("max_attempts"),
    )
    .values(
        attempts=_D.attempts + 1,
        handed_over_at=bindparam("now"),
        lease_until=bindparam("until"),
    )
    .returning(_D.id)
)


def released(delivery: Any) -> Outcome:
    """The outcome of a claimed delivery given back unsent (``release``)."""
    return Outcome(delivery, DeliveryStatus.SCHEDULED, released=True)


async def renew(db: Database, ids: Sequence[str], token: str, until: datetime) -> set[str]:
    """Extend the lease of the rows this claim still holds; the ids it still holds."""
    if not ids:
        return set()
    async with db.transaction(Priority.SEND) as tx:
        [rows] = await tx.fetch((RENEW, {"ids": list(ids), "token": token, "until": until}))
    return {row.id for row in rows}


async def hand_over(
    db: Database,
    ids: Sequence[str],
    token: str,
    now: datetime,
    until: datetime,
    max_attempts: int,
) -> set[str]:
    """Count an attempt for each message about to be given to its provider; the ids that may
    go. A row this claim no longer holds, or one that has used up its attempts, may not.
    Group-committed with the process's other sending writes (:mod:`calnotify.db.group`)."""
    if not ids:
        return set()
    values = {
        "ids": list(ids), "token": token, "now": now, "until": until,
        "max_attempts": max_attempts,
    }  # fmt: skip

    async def work(tx: Tx) -> set[str]:
        [rows] = await tx.fetch((HAND_OVER, values))
        return {row.id for row in rows}

    return await db.sends.run(work)


# --- recording ---------------------------------------------------------------------------


@dataclass
class Outcome:
    """How one claimed delivery ended this round; :func:`record` writes it."""

    delivery: Any  # the claimed row
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
    # The number of this attempt, when handed over (the claimed row's count plus one).
    attempt: int = 0

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


def _kept(name: str, column: Any) -> Any:
    """The new value, or the stored one when the new one is empty."""
    return func.coalesce(func.nullif(bindparam(name), ""), column)


HELD = Statement(
    select(_D.id, _D.claim_token)
    .where(_D.id.in_(bindparam("ids", expanding=True)), _D.status == SENDING)
    # Locked on PostgreSQL until the write, so a rescue by another worker cannot slip in.
    .with_for_update()
)
RECORD = Statement(
    update(_TABLE)
    .where(
        _D.id == bindparam("b_id"),
        _D.claim_token == bindparam("b_token"),
        _D.status == SENDING,
    )
    .values(
        status=bindparam("b_status"),
        reason=bindparam("b_reason"),
        last_error=bindparam("b_error"),
        sent_at=bindparam("b_sent_at"),
        run_at=func.coalesce(bindparam("b_run_at"), _D.run_at),
        # What this round did not learn (a release, a skip) keeps what is stored.
        provider=_kept("b_provider", _D.provider),
        provider_message_id=_kept("b_message_id", _D.provider_message_id),
        subject=_kept("b_subject", _D.subject),
        body=_kept("b_body", _D.body),
        recipient=_kept("b_recipient", _D.recipient),
        sender=_kept("b_sender", _D.sender),
        claim_token=None,
        lease_until=None,
        handed_over_at=None,
        updated_at=bindparam("b_now"),
    )
)
ATTEMPT = Statement(insert(table(DeliveryAttempt)))


async def record(db: Database, outcomes: Sequence[Outcome], now: datetime) -> int:
    """Write the outcomes (of one claim or several), and an attempt row for each hand-over;
    the number of rows written. Guarded by each row's claim token: a worker that lost its
    lease writes nothing. Group-committed with the process's other sending writes."""
    if not outcomes:
        return 0
    for o in outcomes:
        check(o.transition, DeliveryStatus.SENDING, o.status)

    async def work(tx: Tx) -> int:
        [rows] = await tx.fetch((HELD, {"ids": [o.delivery.id for o in outcomes]}))
        return len(_record_held(tx, outcomes, rows, now))

    return await db.sends.run(work)


def _record_held(
    tx: Tx, outcomes: Sequence[Outcome], rows: Sequence[Any], now: datetime
) -> set[str]:
    """Write the outcomes of the rows their claims still hold (``rows``: each one's claim
    token as it stands in this transaction); the ids written."""
    tokens = {row.id: row.claim_token for row in rows}
    held = {
        o.delivery.id
        for o in outcomes
        if o.delivery.claim_token is not None
        and tokens.get(o.delivery.id) == o.delivery.claim_token
    }
    tx.write_many(RECORD, [_record_row(o, now) for o in outcomes if o.delivery.id in held])
    attempts = [_attempt_row(o, now) for o in outcomes if o.handed_over and o.delivery.id in held]
    tx.write_many(ATTEMPT, attempts)
    return held


def _record_row(o: Outcome, now: datetime) -> dict[str, Any]:
    d = o.delivery
    sent = o.status == DeliveryStatus.SENT
    reason, error = (d.reason, d.last_error) if o.released else (str(o.reason), o.error)
    return {
        "b_id": d.id,
        "b_token": d.claim_token,
        "b_status": o.status.value,
        "b_reason": reason,
        # A sent delivery shows no old error as current.
        "b_error": "" if sent else (error or d.last_error),
        "b_sent_at": (o.at or now) if sent else None,
        "b_run_at": o.retry_at,
        "b_provider": o.provider,
        "b_message_id": o.provider_id,
        "b_subject": o.subject,
        "b_body": o.body,
        "b_recipient": o.recipient,
        "b_sender": o.sender,
        "b_now": now,
    }


def _attempt_row(o: Outcome, now: datetime) -> dict[str, Any]:
    outcome = {
        DeliveryStatus.SENT: AttemptOutcome.SENT,
        DeliveryStatus.SCHEDULED: AttemptOutcome.RETRY,
    }.get(o.status, AttemptOutcome.FAILED)
    return {
        "id": new_id(),
        "delivery_id": o.delivery.id,
        "number": o.attempt or o.delivery.attempts,
        "at": o.at or now,
        "outcome": outcome.value,
        "error": o.error[:2000] if outcome != AttemptOutcome.SENT else "",
        "provider_id": o.provider_id[:255],
    }


# --- rescue ------------------------------------------------------------------------------

EXPIRED = Statement(
    select(_D.id, _D.attempts, _D.handed_over_at, _D.deadline_at)
    .where(_D.status == SENDING, _D.lease_until < bindparam("now"))
    .order_by(_D.lease_until)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
LOST = (
    "lease expired during the attempt: the worker stopped or lost its lease; the provider "
    "may have received the message"
)


def _taken_back(*, finished: bool) -> Statement:
    ended = and_(
        _D.id.in_(bindparam("ids", expanding=True)),
        _D.status == SENDING,
        _D.lease_until < bindparam("now"),
    )
    if finished:
        values: dict[str, Any] = {
            "status": DeliveryStatus.FAILED.value,
            "reason": Reason.ABANDONED.value,
            "last_error": LOST,
        }
    else:
        values = {"status": SCHEDULED, "reason": Reason.RETRYING.value, "run_at": bindparam("now")}
        values["last_error"] = case((_D.handed_over_at.is_not(None), LOST), else_=_D.last_error)
    return Statement(
        update(_TABLE)
        .where(ended)
        .values(
            claim_token=None,
            lease_until=None,
            handed_over_at=None,
            updated_at=bindparam("now"),
            **values,
        )
        .returning(_D.id)
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


NEXT_RUN = Statement(select(func.min(_D.run_at)).where(_D.status == SCHEDULED))


async def next_run_at(db: Database) -> datetime | None:
    """When the earliest scheduled delivery may be claimed."""
    [[row]] = await db.fetch((NEXT_RUN, {}))
    value: datetime | None = row[0]
    return value


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
