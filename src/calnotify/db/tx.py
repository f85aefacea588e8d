"""Write transactions of compiled statements (:class:`~calnotify.db.statements.Statement`),
with no ORM session: the one way the busy paths write.

A :class:`Tx` reads with :meth:`Tx.fetch` and writes with :meth:`Tx.write` /
:meth:`Tx.write_many`. Writes are sent with the next read or with the commit, so a
transaction that reads what it needs, then writes, goes to the database twice whatever it
writes: on SQLite the statements run on the event loop's thread
(:class:`~calnotify.db.sqlite_driver.InlineWriter`); on PostgreSQL they are sent one after
another on the transaction's pooled connection (psycopg's pipeline mode, which would send
them in one round trip, cost more CPU than the round trips it saved on a local network).

Transactions are opened by :meth:`calnotify.db.engine.Database.transaction`, which commits
when the block ends cleanly and rolls back otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import psycopg
from sqlalchemy.engine import Dialect

from calnotify.db.sqlite_driver import InlineWriter, Step
from calnotify.db.statements import Bound, Statement

__all__ = ["PostgresTx", "Reader", "SQLiteTx", "Tx"]


class Reader(Protocol):
    """What reads compiled statements: a :class:`Tx`, or the
    :class:`~calnotify.db.engine.Database` itself outside a transaction."""

    async def fetch(self, *reads: Bound) -> list[list[Any]]: ...


class Tx(Protocol):
    """One write transaction."""

    dialect: Dialect

    async def fetch(self, *reads: Bound) -> list[list[Any]]:
        """The rows of each (statement, parameters), after the writes asked before it."""
        ...

    def write(self, statement: Statement, values: Mapping[str, Any]) -> None:
        """``statement`` with ``values``, sent with the next read or the commit."""
        ...

    def write_many(self, statement: Statement, rows: Sequence[Mapping[str, Any]]) -> None:
        """``statement`` once per row of values (nothing for no rows)."""
        ...


class SQLiteTx:
    """A transaction on the process's :class:`InlineWriter` (begun by the caller)."""

    def __init__(self, writer: InlineWriter, dialect: Dialect) -> None:
        self.dialect = dialect
        self._writer = writer
        self._pending: list[Step] = []

    async def fetch(self, *reads: Bound) -> list[list[Any]]:
        dialect = self.dialect
        steps, self._pending = self._pending, []
        steps.extend(Step(*s.bind(dialect, v)) for s, v in reads)
        done = self._writer.run(steps)
        found = done[len(steps) - len(reads) :]
        return [s.rows(dialect, raw) for (s, _), raw in zip(reads, found, strict=True)]

    def write(self, statement: Statement, values: Mapping[str, Any]) -> None:
        self._pending.append(Step(*statement.bind(self.dialect, values)))

    def write_many(self, statement: Statement, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            self._pending.append(Step(*statement.bind_many(self.dialect, rows), many=True))

    async def commit(self) -> None:
        steps, self._pending = self._pending, []
        self._writer.run(steps)
        self._writer.commit()

    def abandon(self) -> None:
        """Roll back whatever is open (at once: nothing to wait for, nothing a
        cancellation can skip)."""
        self._pending = []
        self._writer.rollback()


class PostgresTx:
    """A transaction on a pooled psycopg connection."""

    def __init__(self, connection: psycopg.AsyncConnection[Any], dialect: Dialect) -> None:
        self.dialect = dialect
        self._connection = connection
        self._pending: list[tuple[str, Any, bool]] = []

    async def _send(self, extra: list[tuple[str, Any, bool]]) -> list[list[Any]]:
        # One statement after another: psycopg's pipeline mode saves round trips that cost
        # little on a local network and took more CPU than they saved (bench/RESULTS.md).
        steps, self._pending = [*self._pending, *extra], []
        return [await _execute(self._connection, *step) for step in steps]

    async def fetch(self, *reads: Bound) -> list[list[Any]]:
        dialect = self.dialect
        steps = [(*s.bind(dialect, v), False) for s, v in reads]
        done = await self._send(steps)
        found = done[len(done) - len(reads) :]
        return [s.rows(dialect, raw) for (s, _), raw in zip(reads, found, strict=True)]

    def write(self, statement: Statement, values: Mapping[str, Any]) -> None:
        self._pending.append((*statement.bind(self.dialect, values), False))

    def write_many(self, statement: Statement, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            self._pending.append((*statement.bind_many(self.dialect, rows), True))

    async def commit(self) -> None:
        if self._pending:
            await self._send([])


async def _execute(
    connection: psycopg.AsyncConnection[Any], sql: str, parameters: Any, many: bool
) -> list[Any]:
    cursor = connection.cursor()
    if many:
        await cursor.executemany(sql, parameters)
        return []
    await cursor.execute(sql, parameters)
    return await cursor.fetchall() if cursor.description else []
