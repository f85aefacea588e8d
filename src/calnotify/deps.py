"""Request-scoped dependencies shared by every router."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.clock import Clock
from calnotify.db.engine import Database

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's unit of work: committed before the response is sent, or rolled back."""
    db = get_database(request)
    async with db.session(write=request.method not in _READ_METHODS) as session:
        yield session


# scope="function": the unit of work ends (commits) before the response is sent, so a
# success answer always means the change is durable.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


ClockDep = Annotated[Clock, Depends(get_clock)]
