"""Request-scoped dependencies shared by every router.

A request has at most two units of work, never open at the same time:

* the *read* unit (:data:`ReadSessionDep`): never takes SQLite's write lock nor waits for
  a writer (WAL). A read request (GET, HEAD, OPTIONS) uses it for everything.
* the *write* unit of a write request (:data:`SessionDep` on POST, PUT, DELETE, …): the
  only one that takes the write lock (SQLite). A route whose change may plan nothing
  takes :class:`WriteUnits` instead, and its service opens either a write unit or the
  database's one-trip writer (:meth:`~calnotify.db.engine.Database.writer`).

The busiest reads skip units of work altogether (:meth:`Database.fetch`, :data:`DatabaseDep`).

The caller's token is resolved first (auth/deps.py), from the principals the database
remembers or by a read outside any unit of work, so a bad, missing or revoked token is
refused without queueing behind writers. FastAPI
resolves a route's parameters in the order they are declared, so a route declares its
principal (``principal: EventsWrite``) *before* ``session: SessionDep``; a webhook
declares its signature check before it too. tests/test_auth_before_lock.py holds every
route to this.

Dependencies here are coroutines: FastAPI runs a plain function in a worker thread, a
round trip to the thread pool on every request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
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


async def _database(request: Request) -> Database:
    return get_database(request)


#: The database itself, for reads that need no unit of work (:meth:`Database.fetch`).
DatabaseDep = Annotated[Database, Depends(_database)]


def is_read_request(request: Request) -> bool:
    return request.method in _READ_METHODS


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A read-only unit of work. The session connects on its first statement, so a
    request that never reads through it costs nothing."""
    async with get_database(request).session(write=False) as session:
        yield session


ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's unit of work: committed before the response is sent, or rolled back.

    A read request gets a read unit; a write request the write unit.
    """
    if is_read_request(request):
        async with get_database(request).session(write=False) as reader:
            yield reader
        return
    async with write_unit(request) as session:
        yield session


@asynccontextmanager
async def write_unit(request: Request) -> AsyncIterator[AsyncSession]:
    """The write unit of work of ``request``, with the settings its planning reads."""
    async with get_database(request).session(write=True) as session:
        settings = getattr(request.app.state, "settings", None)
        if settings is not None:
            session.info[PLANNING_HORIZON] = timedelta(days=settings.planning_horizon_days)
        yield session


# scope="function": the unit of work ends (commits) before the response is sent, so a
# success answer always means the change is durable.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


@dataclass(frozen=True, slots=True)
class WriteUnits:
    """For a route whose service picks its unit of work (the route takes the request and
    hands ``WriteUnits(request)`` to it): a write unit of work
    (:func:`write_unit`) when the change plans deliveries, else the database's
    :meth:`~calnotify.db.engine.Database.writer`, one trip for a row or two. Either is
    opened once and ends (commits) before the answer is sent, as :data:`SessionDep`."""

    request: Request

    @property
    def db(self) -> Database:
        return get_database(self.request)

    @property
    def clock(self) -> Clock:
        return get_clock(self.request)

    def session(self) -> AbstractAsyncContextManager[AsyncSession]:
        return write_unit(self.request)


def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


async def _clock(request: Request) -> Clock:
    return get_clock(request)


ClockDep = Annotated[Clock, Depends(_clock)]
