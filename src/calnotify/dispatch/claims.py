"""The claim: due ``scheduled`` rows become ``sending``, with a lease and a claim token.

PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so any number of workers claim disjoint batches.
SQLite: the write transaction itself is exclusive (``BEGIN IMMEDIATE``) and milliseconds
long. Both read the partial index on ``run_at`` where ``status = 'scheduled'``.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select, update

from calnotify.db.engine import Database
from calnotify.models import Delivery
from calnotify.models.delivery import DeliveryStatus


async def claim_due_deliveries(
    db: Database, now: datetime, limit: int, lease: timedelta
) -> Sequence[Delivery]:
    token = secrets.token_hex(16)
    due = (
        select(Delivery.id)
        .where(Delivery.status == DeliveryStatus.SCHEDULED, Delivery.run_at <= now)
        .order_by(Delivery.run_at)
        .limit(limit)
    )
    if not db.is_sqlite:
        due = due.with_for_update(skip_locked=True)
    statement = (
        update(Delivery)
        .where(Delivery.id.in_(due.scalar_subquery()))
        .values(
            status=DeliveryStatus.SENDING,
            claim_token=token,
            lease_until=now + lease,
            attempts=Delivery.attempts + 1,
            updated_at=now,
        )
        .returning(Delivery)
        .execution_options(synchronize_session=False)
    )
    async with db.session() as session:
        claimed = (await session.scalars(statement)).all()
    return claimed


async def renew_lease(db: Database, ids: Sequence[str], token: str, until: datetime) -> set[str]:
    """Extend the lease of rows this claim still holds; the ids it still holds."""
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


async def rescue_expired_leases(db: Database, now: datetime) -> int:
    """Give deliveries whose worker died (lease over) back to the queue."""
    async with db.session() as session:
        result = await session.execute(
            update(Delivery)
            .where(Delivery.status == DeliveryStatus.SENDING, Delivery.lease_until < now)
            .values(
                status=DeliveryStatus.SCHEDULED,
                claim_token=None,
                lease_until=None,
                run_at=now,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
    return int(getattr(result, "rowcount", 0) or 0)


async def next_due_at(db: Database) -> datetime | None:
    async with db.session(write=False) as session:
        return await session.scalar(
            select(func.min(Delivery.run_at)).where(Delivery.status == DeliveryStatus.SCHEDULED)
        )
