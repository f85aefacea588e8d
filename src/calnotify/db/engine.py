"""The database: engines, units of work and transactions, for SQLite (the embedded
default) and PostgreSQL (scale-out).

Three ways in, each for its own job:

* :meth:`Database.transaction`: a write transaction of compiled statements
  (:mod:`calnotify.db.tx`), on a raw driver connection: the busy paths (sending, booking,
  rules) write this way.
* :meth:`Database.fetch`: reads of a statement or two outside any transaction, that never
  wait for a writer.
* :meth:`Database.session`: an ORM unit of work, for the paths that run seldom
  (administration, the console's forms).

SQLite has one writer. Every write of a process passes its :class:`~calnotify.db.gate.WriteGate`
(the dispatcher first, requests refused when the queue is too long), then starts with
``BEGIN IMMEDIATE`` so that writers of other processes queue on the busy timeout instead of
one failing with "database is locked" when it upgrades a read lock; reads never wait for a
writer (WAL).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import event
from sqlalchemy.engine import URL, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from calnotify.db import sqlite_driver
from calnotify.db.gate import Priority, WriteGate
from calnotify.db.group import GroupCommit
from calnotify.db.statements import POSTGRES, SQLITE, Bound
from calnotify.db.tx import PostgresTx, SQLiteTx, Tx
from calnotify.db.urls import async_url, connect_args

#: What the database raises when it is away, locked for long or refuses a statement,
#: whichever way it was reached (an ORM session, a transaction, a read).
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    DBAPIError,
    sqlite3.Error,
    psycopg.Error,
    OSError,
)


class Database:
    """Owns the engines and connections of one database (see the module)."""

    def __init__(
        self,
        raw_url: str,
        *,
        pool_size: int = 10,
        busy_timeout_ms: int = 10_000,
        connect_timeout: int | None = None,
        gate: WriteGate | None = None,
        prepare: bool = True,
    ):
        """``connect_timeout``: seconds a PostgreSQL connection may take to open (None:
        the driver's default, which waits for the operating system to give up).
        ``prepare``: PostgreSQL runs the busy statements as prepared statements, planned
        once per connection (:class:`~calnotify.db.tx.PostgresTx`)."""
        self.url = async_url(raw_url)
        self.dialect = self.url.get_backend_name()
        #: What :class:`~calnotify.db.statements.Statement` compiles for on this database.
        self.sql: Dialect = SQLITE if self.dialect == "sqlite" else POSTGRES
        self._busy_timeout_ms = busy_timeout_ms
        self._prepare = prepare
        self.gate = gate or WriteGate()
        #: The sending side's small writes, group-committed (see calnotify.db.group).
        self.sends = GroupCommit(self.transaction)
        self._inline: sqlite3.Connection | None = None
        self._reader: sqlite_driver.ThreadConnection | None = None
        self._writer: sqlite_driver.InlineWriter | None = None
        self._opening = asyncio.Lock()
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        if self.dialect == "sqlite":
            self.engine = _sqlite_engine(self.url, busy_timeout_ms, begin="BEGIN IMMEDIATE")
            self.read_engine = _sqlite_engine(self.url, busy_timeout_ms, begin="BEGIN")
        else:
            timeout = {} if connect_timeout is None else connect_args(self.url, connect_timeout)
            self._connect_options = timeout
            self._pool_size = pool_size
            self.engine = create_async_engine(
                self.url, pool_size=pool_size, max_overflow=pool_size, connect_args=timeout
            )
            self.read_engine = self.engine
        self._write = async_sessionmaker(self.engine, expire_on_commit=False)
        self._read = async_sessionmaker(self.read_engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    # --- transactions of compiled statements -----------------------------------------------

    @asynccontextmanager
    async def transaction(self, priority: Priority = Priority.REQUEST) -> AsyncIterator[Tx]:
        """A write transaction (:mod:`calnotify.db.tx`): commits when the block ends
        cleanly, rolls back otherwise. On SQLite it passes the write gate at ``priority``
        (a request may be refused with :class:`~calnotify.db.gate.Overloaded`)."""
        if not self.is_sqlite:
            async with self._connection() as connection:
                tx = PostgresTx(connection, self.sql, prepare=self._prepare)
                try:
                    yield tx
                    await tx.commit()
                except BaseException:
                    await tx.abandon()
                    raise
                await tx.announce()
            return
        await self.gate.acquire(priority)
        try:
            writer = self._writer or await self._open_writer()
            await writer.begin()
            sqlite_tx = SQLiteTx(writer, self.sql)
            try:
                yield sqlite_tx
                await sqlite_tx.commit()
            except BaseException:
                sqlite_tx.abandon()
                raise
        finally:
            self.gate.release()

    async def fetch(self, *reads: Bound) -> list[list[Any]]:
        """The rows of each (statement, parameters), outside any transaction: for the reads
        of a request that a statement or two answer, each a bounded page of an index. Never
        waits for a writer.

        SQLite reads them right here, on the event loop's thread (in one snapshot when
        there are several): a read of a few indexed rows takes less time than handing it
        to another thread and back. That connection never waits for a lock; in the rare
        moment SQLite answers busy, the read goes to a connection on a thread of its own
        that waits. PostgreSQL reads on a pooled connection, in one round trip (one query
        string: the reads see one snapshot).
        """
        dialect = self.sql
        if self.is_sqlite:
            statements = [s.bind(dialect, v) for s, v in reads]
            try:
                raw = sqlite_driver.read_now(self._inline or self._open_inline(), statements)
            except sqlite3.OperationalError as exc:
                if not sqlite_driver.is_busy(exc):
                    raise
                reader = self._reader or await self._open_reader()
                raw = await reader.call(lambda c: sqlite_driver.read_now(c, statements))
            return [s.rows(dialect, r) for (s, _), r in zip(reads, raw, strict=True)]
        async with self._connection() as connection:
            outside = PostgresTx(connection, dialect, begin=False, prepare=self._prepare)
            return await outside.fetch(*reads)

    def _open_inline(self) -> sqlite3.Connection:
        self._inline = sqlite_driver.connect_inline(self.url.database or ":memory:")
        return self._inline

    async def _open_writer(self) -> sqlite_driver.InlineWriter:
        async with self._opening:
            if self._writer is None:
                database = self.url.database or ":memory:"
                timeout = self._busy_timeout_ms / 1000
                checkpointer = await sqlite_driver.connect(database, busy_timeout=timeout)
                self._writer = sqlite_driver.InlineWriter(database, timeout, checkpointer)
            return self._writer

    async def _open_reader(self) -> sqlite_driver.ThreadConnection:
        async with self._opening:
            if self._reader is None:
                self._reader = await sqlite_driver.connect(
                    self.url.database or ":memory:",
                    busy_timeout=self._busy_timeout_ms / 1000,
                    pragmas=("query_only=ON",),
                )
            return self._reader

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        pool = self._pool or await self._open_pool()
        async with pool.connection() as connection:
            yield connection

    async def _open_pool(self) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        async with self._opening:
            if self._pool is None:
                conninfo = self.url.set(drivername="postgresql").render_as_string(
                    hide_password=False
                )
                pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
                    conninfo,
                    min_size=1,
                    max_size=self._pool_size * 2,
                    kwargs={"autocommit": True, **self._connect_options},
                    configure=_configure,
                    open=False,
                    name="calnotify",
                )
                await pool.open(wait=False)
                self._pool = pool
            return self._pool

    # --- ORM units of work -------------------------------------------------------------------

    @asynccontextmanager
    async def session(self, *, write: bool = True) -> AsyncIterator[AsyncSession]:
        """A unit of work: commits when the block ends cleanly, rolls back otherwise."""
        if write and self.is_sqlite:
            await self.gate.acquire(Priority.REQUEST)
            try:
                async with self._unit(write=True) as session:
                    yield session
            finally:
                self.gate.release()
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
                # A read-only unit of work just closes: the connection's transaction ends
                # without expiring what was loaded.
            except BaseException:
                await session.rollback()
                raise

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()
        for connection in (self._reader, self._writer):
            if connection is not None:
                await connection.close()
        self._reader = self._writer = None
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


async def _configure(connection: psycopg.AsyncConnection[Any]) -> None:
    """A new pooled connection reads JSON columns with :func:`_json_value`."""
    set_json_loads(_json_value, connection)


_decode_json = json.JSONDecoder().decode


def _json_value(data: bytes | str) -> Any:
    """A JSON column's value, as ``json.loads`` gives it, for less: the commonest values
    (an empty list or object) without parsing, the text decoded as the UTF-8 PostgreSQL
    sends instead of guessed from its first bytes."""
    if data == b"[]":
        return []
    if data == b"{}":
        return {}
    return _decode_json(data.decode() if isinstance(data, bytes) else data)


def _sqlite_engine(url: URL, busy_timeout_ms: int, *, begin: str) -> AsyncEngine:
    engine = create_async_engine(url, connect_args={"timeout": busy_timeout_ms / 1000})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy's "begin" event own transaction start (pysqlite's implicit
        # BEGIN would defer the write lock until the first write).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        for pragma in sqlite_driver.PRAGMAS:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine
