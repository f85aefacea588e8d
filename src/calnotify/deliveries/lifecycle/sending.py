"""While and after sending: lease renewals, hand-overs (an attempt counted before the
provider is called) and the recorded outcomes, each group-committed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update

from calnotify.db.engine import Database
from calnotify.db.gate import Priority
from calnotify.db.statements import Statement, table
from calnotify.db.tx import Tx
from calnotify.deliveries.lifecycle.columns import SENDING, TABLE, D
from calnotify.deliveries.states import (
    AttemptOutcome,
    DeliveryStatus,
    Reason,
    check,
)
from calnotify.ids import new_id
from calnotify.models import DeliveryAttempt

RENEW = Statement(
    update(TABLE)
    .where(
        D.id.in_(bindparam("ids", expanding=True)),
        D.claim_token == bindparam("token"),
        D.status == SENDING,
    )
    .values(lease_until=bindparam("until"))
    .returning(D.id)
)

HAND_OVER = Statement(
    update(TABLE)
    .where(
        D.id.in_(bindparam("ids", expanding=True)),
        D.claim_token == bindparam("token"),
        D.status == SENDING,
        D.attempts < bindparam("max_attempts"),
    )
    .values(
        attempts=D.attempts + 1,
        handed_over_at=bindparam("now"),
        lease_until=bindparam("until"),
    )
    .returning(D.id)
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
    # The provider said the recipient opted out (Twilio 21610): the dispatcher sets their
    # DND for the channel once the outcome is recorded.
    opted_out: bool = False

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
    select(D.id, D.claim_token)
    .where(D.id.in_(bindparam("ids", expanding=True)), D.status == SENDING)
    # Locked on PostgreSQL until the write, so a rescue by another worker cannot slip in.
    .with_for_update()
)
RECORD = Statement(
    update(TABLE)
    .where(
        D.id == bindparam("b_id"),
        D.claim_token == bindparam("b_token"),
        D.status == SENDING,
    )
    .values(
        status=bindparam("b_status"),
        reason=bindparam("b_reason"),
        last_error=bindparam("b_error"),
        sent_at=bindparam("b_sent_at"),
        run_at=func.coalesce(bindparam("b_run_at"), D.run_at),
        # What this round did not learn (a release, a skip) keeps what is stored.
        provider=_kept("b_provider", D.provider),
        provider_message_id=_kept("b_message_id", D.provider_message_id),
        subject=_kept("b_subject", D.subject),
        body=_kept("b_body", D.body),
        recipient=_kept("b_recipient", D.recipient),
        sender=_kept("b_sender", D.sender),
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
