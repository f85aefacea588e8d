"""Claiming due deliveries: fairly, at most a cap per location, leased to one worker."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, update

from calnotify.db.engine import Database
from calnotify.db.gate import Priority
from calnotify.db.statements import Statement
from calnotify.deliveries.lifecycle.columns import SCHEDULED, SENDING, TABLE, D


def _claim(*, only: bool) -> Statement:
    """Due rows, each location's earliest first, round-robin, become ``sending``.

    Parameters: ``now``, ``window`` (candidates looked at), ``limit``, ``skip`` (locations
    left out) or ``only`` (the one location taken), ``token``, ``until``."""
    candidates = (
        select(D.id, D.location_id, D.run_at)
        .where(D.status == SCHEDULED, D.run_at <= bindparam("now"))
        .order_by(D.run_at)
        .limit(bindparam("window"))
        # PostgreSQL: workers claim disjoint rows; SQLite's writer is alone anyway.
        .with_for_update(skip_locked=True)
    )
    if only:
        candidates = candidates.where(D.location_id == bindparam("only"))
    else:
        candidates = candidates.where(D.location_id.not_in(bindparam("skip", expanding=True)))
    due = candidates.cte("due")
    turn = (
        func.row_number()
        .over(partition_by=due.c.location_id, order_by=(due.c.run_at, due.c.id))
        .label("turn")
    )
    ranked = select(due.c.id, due.c.run_at, turn).subquery("ranked")
    chosen = select(ranked.c.id).order_by(ranked.c.turn, ranked.c.run_at).limit(bindparam("limit"))
    return Statement(
        update(TABLE)
        .where(D.id.in_(chosen.scalar_subquery()), D.status == SCHEDULED)
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
    D[name]
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
