"""``/users/{userId}/inbox``: in-app notifications of a user of the token's location."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy import func, select

from calnotify.api.paging import Limit, Skip
from calnotify.api.types import Timestamp
from calnotify.auth.deps import require_unversioned
from calnotify.auth.scopes import Scope
from calnotify.auth.tokens import Principal
from calnotify.deps import SessionDep
from calnotify.models import InboxItem
from calnotify.users.service import get_user

router = APIRouter(prefix="/users/{userId}/inbox", tags=["Inbox"])

Reader = Annotated[Principal, Depends(require_unversioned(Scope.USERS_READ))]


class InboxItemOut(BaseModel):
    id: str
    deliveryId: str
    appointmentId: str
    notificationType: str
    title: str
    body: str
    createdAt: Timestamp
    readAt: Timestamp | None


class InboxOut(BaseModel):
    items: list[InboxItemOut]
    total: int


@router.get("", response_model=InboxOut, operation_id="get-inbox")
async def get_inbox(
    userId: str,
    principal: Reader,
    session: SessionDep,
    unread: bool | None = None,
    limit: Limit = 50,
    skip: Skip = 0,
) -> InboxOut:
    """The user's inbox, newest first; ``unread=true`` for unread items only."""
    user = await get_user(session, principal, userId)
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
    return InboxOut(items=[item_out(i) for i in rows], total=int(total or 0))


def item_out(item: InboxItem) -> InboxItemOut:
    return InboxItemOut(
        id=item.id,
        deliveryId=item.delivery_id,
        appointmentId=item.appointment_id,
        notificationType=item.notification_type,
        title=item.title,
        body=item.body,
        createdAt=item.created_at,
        readAt=item.read_at,
    )
