"""``/users/{userId}/inbox``: in-app notifications of a user of the token's location."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sse_starlette import EventSourceResponse

from calnotify.api.paging import Limit, Skip
from calnotify.api.types import QueryBool, Timestamp
from calnotify.auth.deps import require_unversioned
from calnotify.auth.scopes import Scope
from calnotify.auth.tokens import PRINCIPAL_SECONDS, Principal, resolve_token
from calnotify.config import Settings
from calnotify.db.engine import Database
from calnotify.db.scoped import find_in_location
from calnotify.deps import ClockDep, SessionDep
from calnotify.errors import NotFound
from calnotify.ids import looks_like_id
from calnotify.inbox.hub import InboxHub
from calnotify.inbox.service import list_inbox
from calnotify.models import InboxItem, User
from calnotify.users.service import get_user

router = APIRouter(prefix="/users/{userId}/inbox", tags=["Inbox"])

Reader = Annotated[Principal, Depends(require_unversioned(Scope.USERS_READ))]
Writer = Annotated[Principal, Depends(require_unversioned(Scope.USERS_WRITE))]
POLL_SECONDS = 0.5
# An open stream reads its token again this often, so a revoked token's streams end as soon
# as its API calls are refused.
RECHECK_SECONDS = PRINCIPAL_SECONDS
STREAM_RETRY_AFTER_SECONDS = 5  # a 429's Retry-After: a slot frees when a stream closes


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
    unread: QueryBool = None,
    limit: Limit = 50,
    skip: Skip = 0,
) -> InboxOut:
    """The user's inbox, newest first; ``unread=true`` for unread items only."""
    rows, total = await list_inbox(
        session, principal, userId, unread=unread, limit=limit, skip=skip
    )
    return InboxOut(items=[item_out(i) for i in rows], total=total)


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


@router.post("/{itemId}/read", response_model=InboxItemOut, operation_id="read-inbox-item")
async def mark_read(
    userId: str, itemId: str, principal: Writer, session: SessionDep, clock: ClockDep
) -> InboxItemOut:
    """Mark an item read (reading it again keeps the first time)."""
    user = await get_user(session, principal, userId)
    item = None
    if looks_like_id(itemId):
        item = await session.scalar(
            select(InboxItem).where(InboxItem.id == itemId, InboxItem.user_id == user.id)
        )
    if item is None:
        raise NotFound("Inbox item not found")
    if item.read_at is None:
        item.read_at = clock.now()
        await session.flush()
    return item_out(item)


async def stream_slot(principal: Reader, request: Request) -> AsyncIterator[None]:
    """One of the token's open-stream slots in this process, held until the stream ends.

    A request-scoped dependency: its exit runs when the response is over, however it ends
    (the client goes away, the token is revoked, the server stops), so a closed stream
    always frees its slot.
    """
    settings: Settings = request.app.state.settings
    hub: InboxHub = request.app.state.inbox_hub
    limit = settings.sse_streams_per_token
    if not hub.open_stream(principal.token_id, limit):
        message = f"Too many open inbox streams for this token (limit {limit}): close one first"
        raise HTTPException(
            status_code=429,
            detail=message,
            headers={"Retry-After": str(STREAM_RETRY_AFTER_SECONDS)},
        )
    try:
        yield
    finally:
        hub.close_stream(principal.token_id)


@router.get(
    "/stream",
    operation_id="stream-inbox",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"},
        429: {
            "description": "The token already has CALNOTIFY_SSE_STREAMS_PER_TOKEN streams "
            "open in this process; `Retry-After` says when to try again."
        },
    },
)
async def stream_inbox(
    userId: str,
    principal: Reader,
    _slot: Annotated[None, Depends(stream_slot)],
    session: SessionDep,
    request: Request,
) -> EventSourceResponse:
    """New inbox items as server-sent events (``event: item``, ``data``: the item as JSON,
    ``id``: the item id). A client reconnecting with ``Last-Event-ID`` gets what it missed.

    A token may hold ``CALNOTIFY_SSE_STREAMS_PER_TOKEN`` streams at once in one server
    process (default 10); one more gets 429 with ``Retry-After``. The stream ends within a
    second of its token being revoked, as its other calls are refused within a second."""
    user = await get_user(session, principal, userId)
    db: Database = request.app.state.db
    hub: InboxHub = request.app.state.inbox_hub
    cursor = await _start(db, user.id, request.headers.get("last-event-id", ""))
    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    return EventSourceResponse(_events(db, hub, user.id, token, cursor), ping=15)


async def _still_allowed(reader: AsyncSession, token: str, user_id: str) -> bool:
    """The token still valid (not revoked) and its user still in its location."""
    holder = await resolve_token(reader, token)
    if holder is None or not holder.can(Scope.USERS_READ):
        return False
    return await find_in_location(reader, User, user_id, holder.location_id) is not None


async def _events(
    db: Database, hub: InboxHub, user_id: str, token: str, cursor: Cursor
) -> AsyncIterator[dict[str, str]]:
    """The stream's events: each new item of the user's inbox, until the token is revoked
    (or the user deleted). The token is read again from the database, never from the
    remembered principals, every :data:`RECHECK_SECONDS`: a revoked token's streams end
    within the time its API calls are refused in."""
    wake = hub.subscribe(user_id)
    # Checked at once too: the request may have been let in by a principal remembered from
    # before a revocation.
    checked = time.monotonic() - RECHECK_SECONDS
    try:
        while True:
            async with db.session(write=False) as reader:
                started = time.monotonic()
                if started - checked >= RECHECK_SECONDS:
                    if not await _still_allowed(reader, token, user_id):
                        return  # revoked: the stream ends
                    # From when the check began: a revocation it missed was committed after.
                    checked = started
                rows = (
                    await reader.scalars(
                        select(InboxItem)
                        .where(InboxItem.user_id == user_id, _after(cursor))
                        .order_by(InboxItem.created_at, InboxItem.id)
                        .limit(100)
                    )
                ).all()
            for item in rows:
                cursor = (item.created_at, item.id)
                yield {"event": "item", "id": item.id, "data": item_out(item).model_dump_json()}
            if rows:
                continue
            wake.clear()
            until_check = checked + RECHECK_SECONDS - time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=min(POLL_SECONDS, until_check))
    finally:
        hub.unsubscribe(user_id, wake)


Cursor = tuple[datetime, str]


async def _start(db: Database, user_id: str, last_event_id: str) -> Cursor:
    """Where a stream starts: after the last item the client saw, else after the newest."""
    async with db.session(write=False) as reader:
        if last_event_id and looks_like_id(last_event_id):
            seen = await reader.scalar(
                select(InboxItem).where(InboxItem.id == last_event_id, InboxItem.user_id == user_id)
            )
            if seen is not None:
                return (seen.created_at, seen.id)
        newest = await reader.scalar(
            select(InboxItem)
            .where(InboxItem.user_id == user_id)
            .order_by(InboxItem.created_at.desc(), InboxItem.id.desc())
            .limit(1)
        )
    if newest is not None:
        return (newest.created_at, newest.id)
    return (datetime(1970, 1, 1, tzinfo=UTC), "")


def _after(cursor: Cursor) -> Any:
    created_at, item_id = cursor
    return or_(
        InboxItem.created_at > created_at,
        and_(InboxItem.created_at == created_at, InboxItem.id > item_id),
    )
