"""aiosqlite, with one trip to the connection's thread per statement.

aiosqlite runs each call of a cursor (create, execute, fetch, close) on the connection's
thread and waits for the answer: four round trips per statement, each a hand-over of the
interpreter lock and a wake-up of the event loop. Under load those hand-overs, not SQLite,
were most of a request's time. This connection does a statement's whole cursor life in
one call: execute, fetch every row (a statement of ours reads a bounded page), note the
row count and last row id, close. A commit or rollback with no transaction open (a
connection going back to the pool, a read that opened none) makes no trip at all.
SQLAlchemy's aiosqlite dialect uses it unchanged, through
``create_async_engine(async_creator=...)``.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any, NamedTuple

import aiosqlite

_Outcome = tuple[Any, int, int | None, list[Any]]


class Step(NamedTuple):
    """One statement of :meth:`OneTripConnection.run`."""

    sql: str
    parameters: Any = ()
    #: ``parameters`` is a sequence of parameter rows (``executemany``).
    many: bool = False
    #: Whether the rows it read are the ones expected; if not, :class:`Changed` is raised
    #: and the statements after it are not run.
    check: Callable[[list[Any]], bool] | None = None


class Changed(Exception):
    """What a statement read is no longer what it was expected to be."""


def _run(connection: sqlite3.Connection, sql: str, parameters: Any, *, many: bool) -> _Outcome:
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class OneTripCursor:
    """The part of a DB-API cursor SQLAlchemy's adapter uses; results arrive with the
    statement, so fetching and closing cost nothing."""

    arraysize = 1

    def __init__(self, connection: OneTripConnection) -> None:
        self._connection = connection
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: deque[Any] = deque()

    async def __aenter__(self) -> OneTripCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def _do(self, sql: str, parameters: Any, *, many: bool) -> OneTripCursor:
        outcome: _Outcome = await self._connection._in_thread(sql, parameters, many=many)
        self.description, self.rowcount, self.lastrowid, rows = outcome
        self._rows = deque(rows)
        return self

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> OneTripCursor:
        return await self._do(sql, () if parameters is None else parameters, many=False)

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> OneTripCursor:
        return await self._do(sql, list(parameters), many=True)

    async def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        count = self.arraysize if size is None else size
        return [self._rows.popleft() for _ in range(min(count, len(self._rows)))]

    async def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def close(self) -> None:
        self._rows.clear()


class OneTripConnection(aiosqlite.Connection):
    """An aiosqlite connection whose cursors make one trip per statement."""

    def __init__(self, connector: Any, iter_chunk_size: int) -> None:
        super().__init__(connector, iter_chunk_size)
        # Whether a transaction is open, as of the last call on the connection's thread
        # (the only place it can change).
        self._in_transaction = False

    def cursor(self) -> OneTripCursor:  # type: ignore[override]
        return OneTripCursor(self)

    async def _in_thread(self, sql: str, parameters: Any, *, many: bool) -> _Outcome:
        def call() -> _Outcome:
            connection = self._conn
            try:
                return _run(connection, sql, parameters, many=many)
            finally:
                self._in_transaction = connection.in_transaction

        result: _Outcome = await self._execute(call)  # type: ignore[no-untyped-call]
        return result

    async def fetch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        """The rows of each (sql, parameters), in one trip; several read one snapshot."""
        rows: list[list[Any]] = await self._execute(  # type: ignore[no-untyped-call]
            lambda: read_now(self._conn, statements)
        )
        return rows

    async def run(self, steps: Sequence[Step]) -> list[tuple[list[Any], int]]:
        """Statements in one trip: the rows and the row count of each. What they open (a
        transaction) stays open, also when one raises."""

        def call() -> list[tuple[list[Any], int]]:
            connection = self._conn
            out = []
            try:
                for sql, parameters, many, check in steps:
                    if many:
                        cursor = connection.executemany(sql, parameters)
                    else:
                        cursor = connection.execute(sql, parameters)
                    rows = cursor.fetchall() if cursor.description else []
                    if check is not None and not check(rows):
                        raise Changed(sql)
                    out.append((rows, cursor.rowcount))
                return out
            finally:
                self._in_transaction = connection.in_transaction

        done: list[tuple[list[Any], int]] = await self._execute(call)  # type: ignore[no-untyped-call]
        return done

    @property
    def in_transaction(self) -> bool:
        return self._in_transaction

    async def _end(self, how: str) -> None:
        if not self._in_transaction:
            return

        def call() -> None:
            connection = self._conn
            try:
                getattr(connection, how)()
            finally:
                self._in_transaction = connection.in_transaction

        await self._execute(call)  # type: ignore[no-untyped-call]

    async def commit(self) -> None:
        await self._end("commit")

    async def rollback(self) -> None:
        await self._end("rollback")


async def connect(database: str, *, busy_timeout: float, **options: Any) -> OneTripConnection:
    """Open ``database`` (a path, or a ``file:`` URI) on a thread of its own; ``options``
    go to :func:`sqlite3.connect`; ``busy_timeout``: seconds to wait for a lock."""
    connector = partial(
        sqlite3.connect, database, timeout=busy_timeout, uri=database.startswith("file:"), **options
    )
    connection = OneTripConnection(connector, iter_chunk_size=64)
    # A connection left open must not keep the process alive at exit.
    connection._thread.daemon = True
    await connection
    return connection


def connect_inline(database: str) -> sqlite3.Connection:
    """A read-only connection for :func:`read_now`, on the calling thread, that never waits
    for a lock (it answers busy at once instead)."""
    connection = sqlite3.connect(
        database, timeout=0, isolation_level=None, uri=database.startswith("file:")
    )
    connection.execute("PRAGMA query_only=ON")
    return connection


def read_now(
    connection: sqlite3.Connection, statements: Sequence[tuple[str, Sequence[Any]]]
) -> list[list[Any]]:
    """The rows of each (sql, parameters), read on this thread; several read one snapshot."""
    if len(statements) == 1:
        sql, parameters = statements[0]
        return [connection.execute(sql, parameters).fetchall()]
    connection.execute("BEGIN")
    try:
        return [connection.execute(q, p).fetchall() for q, p in statements]
    finally:
        connection.execute("ROLLBACK")


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """SQLite answered "database is locked" or "busy" (another connection holds a lock)."""
    text = str(exc).lower()
    return "locked" in text or "busy" in text
