"""Request-scoped dependencies shared by every router.

* :data:`DatabaseDep`: the database. The busy paths read with :meth:`Database.fetch` (no
  unit of work; never waits for a writer) and write in one transaction of compiled
  statements (:meth:`Database.transaction`), opened by their service.
* :data:`ReadSessionDep`, :data:`SessionDep`: an ORM unit of work, for the paths that run
  seldom (administration-like routes, the console's lists). A read request gets a read
  unit, which never takes SQLite's write lock; a write request the write unit, committed
  before the answer is sent.
* :data:`PlanningDep`: what a write that plans deliveries is given: the planning horizon of
  recurring series, and the wake-up of this process's dispatcher.

The caller's token is resolved first (auth/deps.py), from the principals the service
remembers or by a read outside any unit of work, so a bad, missing or revoked token is
refused without queueing behind writers. FastAPI resolves a route's parameters in the
order they are declared, so a route declares its principal (``principal: EventsWrite``)
*before* ``session: SessionDep``; a webhook declares its signature check before it too.
tests/test_auth_before_lock.py holds every route to this.

Dependencies here are coroutines: FastAPI runs a plain function in a worker thread, a
round trip to the thread pool on every request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.clock import Clock
from calnotify.db.engine import Database
from calnotify.dispatch.wakeup import Wakeup

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def _database(request: Request) -> Database:
    return get_database(request)


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
    write = not is_read_request(request)
    async with get_database(request).session(write=write) as session:
        yield session


# scope="function": the unit of work ends (commits) before the response is sent, so a
# success answer always means the change is durable.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


@dataclass(frozen=True, slots=True)
class Planning:
    """What a write that plans deliveries is given."""

    horizon: timedelta  # recurring series: deliveries exist as rows when due within it
    wakeup: Wakeup  # told after a commit that planned something due to send

    def planned(self, due: bool) -> None:
        """A write committed; ``due``: it planned something to send."""
        if due:
            self.wakeup.due()


def get_planning(request: Request) -> Planning:
    planning: Planning = request.app.state.planning
    return planning


async def _planning(request: Request) -> Planning:
    return get_planning(request)


PlanningDep = Annotated[Planning, Depends(_planning)]


def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


async def _clock(request: Request) -> Clock:
    return get_clock(request)


ClockDep = Annotated[Clock, Depends(_clock)]
