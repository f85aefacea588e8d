"""Request-scoped dependencies shared by every router.

A request has at most two units of work, never open at the same time:

* the *read* unit (:data:`ReadSessionDep`): never takes SQLite's write lock nor waits for
  a writer (WAL). The caller's token is resolved in it (auth/deps.py), so a bad, missing
  or revoked token is refused without queueing behind writers. A read request (GET, HEAD,
  OPTIONS) uses it for everything.
* the *write* unit of a write request (:data:`SessionDep` on POST, PUT, DELETE, …): opened
  after the read unit has ended, and only then takes the write lock (SQLite).

FastAPI resolves a route's parameters in the order they are declared, so a route declares
its principal (``principal: EventsWrite``) *before* ``session: SessionDep``; a webhook
declares its signature check before it too. tests/test_auth_before_lock.py holds every
route to this.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.appointments.series import PLANNING_HORIZON
from calnotify.clock import Clock
from calnotify.db.engine import Database

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def is_read_request(request: Request) -> bool:
    return request.method in _READ_METHODS


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A read-only unit of work: the token lookup's, and the whole request's for reads.

    The session connects on its first statement, so a request that never reads through
    it costs nothing.
    """
    async with get_database(request).session(write=False) as session:
        yield session


ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]


async def get_session(request: Request, reader: ReadSessionDep) -> AsyncIterator[AsyncSession]:
    """The request's unit of work: committed before the response is sent, or rolled back.

    A read request gets the read unit itself. A write request ends the read unit first
    (its connection goes back to the pool) and then opens the write unit.
    """
    if is_read_request(request):
        yield reader
        return
    await reader.close()
    async with get_database(request).session(write=True) as session:
        settings = getattr(request.app.state, "settings", None)
        if settings is not None:
            session.info[PLANNING_HORIZON] = timedelta(days=settings.planning_horizon_days)
        yield session


# scope="function": the unit of work ends (commits) before the response is sent, so a
# success answer always means the change is durable.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


ClockDep = Annotated[Clock, Depends(get_clock)]
