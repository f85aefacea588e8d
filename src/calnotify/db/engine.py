"""Engines and sessions for SQLite (embedded default) and PostgreSQL (scale-out).

``CALNOTIFY_DATABASE_URL`` is given without a driver (``sqlite:///path``,
``postgresql://user@host:port/db``); the async driver is chosen here.

SQLite has one writer. Write transactions start with ``BEGIN IMMEDIATE`` so that two
writers queue on the busy timeout instead of one failing with "database is locked" when
it upgrades a read lock; reads use a separate engine with deferred transactions so they
never wait for a writer (WAL).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg"}
_ALIASES = {"postgres": "postgresql"}


class DatabaseURLError(ValueError):
    pass


def async_url(raw: str) -> URL:
    """Map a driverless URL to the async driver calnotify uses for its dialect."""
    try:
        url = make_url(raw)
    except Exception as exc:  # sqlalchemy raises ArgumentError with an unhelpful text
        shown = re.sub(r"//([^:/@]*):[^@]*@", r"//\1:***@", raw)
        raise DatabaseURLError(f"not a database URL: {shown!r}") from exc
    backend = _ALIASES.get(url.get_backend_name(), url.get_backend_name())
    if backend not in _DRIVERS:
        raise DatabaseURLError(
            f"unsupported database {backend!r}: use sqlite:///path or postgresql://user@host/db"
        )
    return url.set(drivername=_DRIVERS[backend])


def sync_url(raw: str) -> URL:
    """The same database through a synchronous driver (used by Alembic and admin commands)."""
    url = async_url(raw)
    return url.set(drivername="sqlite" if url.get_backend_name() == "sqlite" else url.drivername)


class Database:
    """Owns the engines of one database and hands out sessions."""

    def __init__(self, raw_url: str, *, pool_size: int = 10, busy_timeout_ms: int = 10_000):
        self.url = async_url(raw_url)
        self.dialect = self.url.get_backend_name()
        if self.dialect == "sqlite":
            self.engine = _sqlite_engine(self.url, busy_timeout_ms, immediate=True)
            self.read_engine = _sqlite_engine(self.url, busy_timeout_ms, immediate=False)
        else:
            self.engine = create_async_engine(
                self.url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
            )
            self.read_engine = self.engine
        self.on_wake: list[Callable[[], None]] = []
        # SQLite has one writer: writers of this process queue here, in order, instead of
        # polling the file lock (SQLite's busy handler sleeps up to 100 ms per retry).
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None
        self._write = async_sessionmaker(self.engine, expire_on_commit=False)
        self._read = async_sessionmaker(self.read_engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @asynccontextmanager
    async def session(self, *, write: bool = True) -> AsyncIterator[AsyncSession]:
        """A unit of work: commits when the block ends cleanly, rolls back otherwise."""
        if write and self._write_lock is not None:
            async with self._write_lock, self._unit(write=True) as session:
                yield session
            return
        async with self._unit(write=write) as session:
            yield session

    @asynccontextmanager
    async def _unit(self, *, write: bool) -> AsyncIterator[AsyncSession]:
        maker = self._write if write else self._read
        async with maker() as session:
            try:
                yield session
                if write:
                    await session.commit()
                    if session.info.pop("wake", False):
                        for callback in self.on_wake:
                            callback()
                # A read-only unit of work just closes: the connection's transaction ends
                # without expiring what was loaded.
            except BaseException:
                await session.rollback()
                raise

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()


def _sqlite_engine(url: URL, busy_timeout_ms: int, *, immediate: bool) -> AsyncEngine:
    engine = create_async_engine(url, connect_args={"timeout": busy_timeout_ms / 1000})
    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy's "begin" event own transaction start (pysqlite's implicit
        # BEGIN would defer the write lock until the first write).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine
