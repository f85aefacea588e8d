"""Planning's transitions: scheduled deliveries cancelled, cancelled ones planned anew."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, or_, update

from calnotify.db.statements import Statement
from calnotify.db.tx import Tx
from calnotify.deliveries.lifecycle.columns import SCHEDULED, TABLE, D
from calnotify.deliveries.states import (
    DeliveryStatus,
    IllegalTransition,
    Reason,
    check,
)

_CANCEL = Statement(
    update(TABLE)
    .where(D.id.in_(bindparam("ids", expanding=True)), D.status == SCHEDULED)
    .values(
        status=DeliveryStatus.CANCELLED.value,
        reason=bindparam("reason"),
        updated_at=bindparam("now"),
    )
)
_CANCEL_MATCHING = Statement(
    update(TABLE)
    .where(
        D.status == SCHEDULED,
        D.notification_id == bindparam("notification_id"),
        D.trigger == bindparam("trigger"),
        or_(
            D.channel != bindparam("channel"),
            D.receiver_type != bindparam("receiver_type"),
            D.notification_type != bindparam("notification_type"),
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
    update(TABLE)
    .where(D.id == bindparam("b_id"), D.status == DeliveryStatus.CANCELLED.value)
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
