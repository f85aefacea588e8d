"""Write transactions of compiled statements (:class:`~calnotify.db.statements.Statement`),
with no ORM session: the one way the busy paths write.

A :class:`Tx` reads with :meth:`Tx.fetch` and writes with :meth:`Tx.write` /
:meth:`Tx.write_many`. Writes are sent with the next read or with the commit, so a
transaction that reads what it needs, then writes, goes to the database twice whatever it
writes: on SQLite the statements run on the event loop's thread
(:class:`~calnotify.db.sqlite_driver.InlineWriter`); on PostgreSQL each trip is one query
string on the transaction's pooled connection (:class:`PostgresTx`; psycopg's pipeline
mode, which would also send them in one round trip, cost more CPU than it saved).

Transactions are opened by :meth:`calnotify.db.engine.Database.transaction`, which commits
when the block ends cleanly and rolls back otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import psycopg
from psycopg.pq import ExecStatus, TransactionStatus
from sqlalchemy.engine import Dialect

from calnotify.db.sqlite_driver import InlineWriter, Step
from calnotify.db.statements import Bound, Statement

__all__ = ["PostgresTx", "Reader", "SQLiteTx", "Tx"]

log = logging.getLogger(__name__)

TUPLES_OK = ExecStatus.TUPLES_OK
INTRANS, INERROR = TransactionStatus.INTRANS, TransactionStatus.INERROR
# Writes sent in one query string at most; a longer batch takes more trips.
_STATEMENTS_PER_TRIP = 500


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

    def notify(self, channel: str) -> None:
        """Tell the processes listening on ``channel`` (PostgreSQL's ``LISTEN``), once the
        transaction has committed; nothing if it does not."""
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

    def notify(self, channel: str) -> None:
        """Nothing: no process listens on SQLite (other processes poll)."""

    async def commit(self) -> None:
        steps, self._pending = self._pending, []
        self._writer.run(steps)
        self._writer.commit()

    def abandon(self) -> None:
        """Roll back whatever is open (at once: nothing to wait for, nothing a
        cancellation can skip)."""
        self._pending = []
        self._writer.rollback()


class _Prepared:
    """The statements prepared on one connection, by name; ``unsure`` after a failed trip
    (some of its ``PREPARE`` may have run, or none)."""

    __slots__ = ("__weakref__", "names", "unsure")

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.unsure = False

    def forget(self) -> None:
        self.names.clear()
        self.unsure = True


_PREPARED: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], _Prepared] = (
    weakref.WeakKeyDictionary()
)


def _prepared_on(connection: psycopg.AsyncConnection[Any]) -> _Prepared:
    found = _PREPARED.get(connection)
    if found is None:
        found = _PREPARED[connection] = _Prepared()
    return found


class PostgresTx:
    """A transaction on a pooled psycopg connection (``begin=False``: reads outside any
    transaction, for :meth:`~calnotify.db.engine.Database.fetch`).

    Each trip to the server is one query string: the writes asked since the last trip, then
    the reads, with their values merged in by psycopg (its client-side binding,
    :class:`psycopg.AsyncClientCursor`), run by the server in order. A round trip costs
    this process more than the statements it carries (psycopg's per-statement protocol
    work, the event loop's waits), and a transaction's ``BEGIN`` and ``COMMIT`` ride with
    its first and last statements: an update of a rule is two trips, a read of a page one.
    A transaction that sent nothing sends nothing.

    With ``prepare`` (the default), a statement whose SQL never changes runs by name
    (``EXECUTE``, :class:`~calnotify.db.statements.Prepared`): the first trip on a
    connection that runs it also carries its ``PREPARE``, so the server parses and plans it
    once per connection rather than on every run (a page of rules: 100 µs of the server's
    CPU instead of 175 to 230). A ``PREPARE`` outlives a failed transaction, so after a trip
    that fails the connection's next trip starts with ``DEALLOCATE ALL`` and prepares
    again. ``prepare=False`` for a connection pooler that does not keep a server session
    per client (PgBouncer's transaction mode).
    """

    def __init__(
        self,
        connection: psycopg.AsyncConnection[Any],
        dialect: Dialect,
        *,
        begin: bool = True,
        prepare: bool = True,
    ) -> None:
        self.dialect = dialect
        self._cursor = psycopg.AsyncClientCursor(connection)
        self._begin = begin
        self._pending: list[str] = []
        self._channels: set[str] = set()
        self._prepared = _prepared_on(connection) if prepare else None
        self._preparing: list[str] = []  # PREPARE statements for the next trip

    def _merged(self, statement: Statement, values: Mapping[str, Any]) -> str:
        sql, bound = statement.bind(self.dialect, values)
        return self._named(statement, sql, bound)

    def _named(self, statement: Statement, sql: str, values: Sequence[Any]) -> str:
        """The statement with its values merged in: by name when it has a prepared form
        (its ``PREPARE`` sent first in the trip if this connection has not run it)."""
        prepared = self._prepared
        form = None if prepared is None else statement.compiled(self.dialect).prepared
        if form is None or prepared is None:
            return self._cursor.mogrify(sql, values)
        if form.name not in prepared.names:
            prepared.names.add(form.name)
            self._preparing.append(form.prepare)
        return self._cursor.mogrify(form.execute, values)

    async def _send(self, statements: list[str]) -> list[list[Any]]:
        """The rows of each statement sent (none for a write) after the pending writes."""
        pending, self._pending = self._pending, []
        if not pending and not statements:
            return []
        head, self._preparing = self._preparing, []
        prepared = self._prepared
        if prepared is not None and prepared.unsure:
            head.insert(0, "DEALLOCATE ALL")  # before the statements that prepare again
            prepared.unsure = False
        if self._begin:
            head.append("BEGIN")
            self._begin = False
        pending[:0] = head
        # Very long batches (a calendar's plan) go as several strings.
        while len(pending) > _STATEMENTS_PER_TRIP:
            await self._run(pending[:_STATEMENTS_PER_TRIP])
            del pending[:_STATEMENTS_PER_TRIP]
        found = await self._run([*pending, *statements])
        return found[len(pending) :]

    async def _run(self, statements: list[str]) -> list[list[Any]]:
        cursor = self._cursor
        try:
            await cursor.execute(";\n".join(statements))
        except BaseException:
            if self._prepared is not None:
                self._prepared.forget()
            raise
        found: list[list[Any]] = []
        more = True
        while more:
            result = cursor.pgresult
            tuples = result is not None and result.status == TUPLES_OK
            found.append(await cursor.fetchall() if tuples else [])
            more = bool(cursor.nextset())
        return found

    async def fetch(self, *reads: Bound) -> list[list[Any]]:
        dialect = self.dialect
        found = await self._send([self._merged(s, v) for s, v in reads])
        return [s.rows(dialect, raw) for (s, _), raw in zip(reads, found, strict=True)]

    def write(self, statement: Statement, values: Mapping[str, Any]) -> None:
        self._pending.append(self._merged(statement, values))

    def write_many(self, statement: Statement, rows: Sequence[Mapping[str, Any]]) -> None:
        sql, many = statement.bind_many(self.dialect, rows)
        self._pending.extend(self._named(statement, sql, values) for values in many)

    def notify(self, channel: str) -> None:
        if not channel.isidentifier():
            raise ValueError(f"not a channel name: {channel!r}")
        self._channels.add(channel)

    async def commit(self) -> None:
        """Send the pending writes and end the transaction (nothing if nothing was sent)."""
        if self._begin and not self._pending:
            return
        await self._send(["COMMIT"])

    async def announce(self) -> None:
        """After the commit, the ``NOTIFY`` of each channel asked for, in a transaction of
        its own that does not wait for the disk. A ``NOTIFY`` in the write transaction
        would hold PostgreSQL's one notification lock until that commit is on disk, so
        every commit that notifies would wait for the one before (16 connections each
        committing one insert: 4,800 a second without, 500 with, bench/RESULTS.md). A
        notification that does not get through costs the listeners one poll interval:
        logged, not raised, the transaction being committed."""
        if not self._channels:
            return
        notified = [f"NOTIFY {channel}" for channel in sorted(self._channels)]
        self._channels = set()
        try:
            await self._run(["BEGIN", "SET LOCAL synchronous_commit TO OFF", *notified, "COMMIT"])
        except psycopg.Error as exc:
            log.warning("cannot notify after a commit (%s): listeners will poll", exc)
            await self.abandon()

    async def abandon(self) -> None:
        """Roll back whatever is open. A connection busy with a statement (a cancelled
        trip) is left as it is: the pool discards a connection returned in that state.
        Writes never sent may have named statements as prepared: the connection prepares
        again."""
        if (self._pending or self._preparing) and self._prepared is not None:
            self._prepared.forget()
        self._pending, self._preparing = [], []
        connection = self._cursor.connection
        if connection.info.transaction_status in (INTRANS, INERROR):
            with contextlib.suppress(psycopg.Error):
                await self._cursor.execute("ROLLBACK")
