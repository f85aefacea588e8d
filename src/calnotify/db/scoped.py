"""Reading rows of one location: another location's row is the same as no row."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.errors import NotFound
from calnotify.ids import looks_like_id

T = TypeVar("T")


async def find_in_location(
    session: AsyncSession,
    model: type[T],
    row_id: str | None,
    location_id: str,
    *,
    include_deleted: bool = False,
) -> T | None:
    """The row with ``row_id`` in ``location_id``, or None (also for malformed ids)."""
    if not row_id or not looks_like_id(row_id):
        return None
    table: Any = model
    query = select(model).where(table.id == row_id, table.location_id == location_id)
    if not include_deleted and hasattr(model, "deleted"):
        query = query.where(table.deleted.is_(False))
    return (await session.scalars(query)).first()


async def get_in_location(
    session: AsyncSession,
    model: type[T],
    row_id: str,
    location_id: str,
    *,
    what: str,
    include_deleted: bool = False,
) -> T:
    """Like :func:`find_in_location`, raising 404 "<what> not found" when there is none."""
    row = await find_in_location(
        session, model, row_id, location_id, include_deleted=include_deleted
    )
    if row is None:
        raise NotFound(f"{what} not found")
    return row
