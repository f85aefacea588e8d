"""Reading a user's inbox: the API's and the console's one read."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.auth.tokens import Principal
from calnotify.models import InboxItem
from calnotify.users.service import get_user


async def list_inbox(
    session: AsyncSession,
    principal: Principal,
    user_id: str,
    *,
    unread: bool | None,
    limit: int,
    skip: int,
) -> tuple[Sequence[InboxItem], int]:
    """A page of the user's inbox, newest first (``unread``: only unread items, or only
    read ones), and how many there are; 404 for a user not of the token's location."""
    user = await get_user(session, principal, user_id)
    conditions = [InboxItem.user_id == user.id]
    if unread is True:
        conditions.append(InboxItem.read_at.is_(None))
    elif unread is False:
        conditions.append(InboxItem.read_at.is_not(None))
    total = await session.scalar(select(func.count()).select_from(InboxItem).where(*conditions))
    rows = await session.scalars(
        select(InboxItem)
        .where(*conditions)
        .order_by(InboxItem.created_at.desc(), InboxItem.id.desc())
        .limit(limit)
        .offset(skip)
    )
    return rows.all(), int(total or 0)
