"""SQLite connections for the fast paths.

The statements of a write transaction or a short read take less time than handing them to
another thread and back (a hand-over of the interpreter lock, and a wake-up of the event
loop, each way), so they run on the event loop's thread, on connections that never wait
for a lock there:

* :class:`InlineWriter`, the process's one writer: ``BEGIN IMMEDIATE`` is tried at once;
  when another process holds the write lock, it is tried again after short asynchronous
  sleeps (up to the busy timeout), so the loop never blocks on it. Once begun, a WAL
  transaction waits for nothing. It never checkpoints in a commit: :meth:`InlineWriter.
  commit` has the WAL checkpointed and started over on a thread of its own when it has
  grown (:func:`checkpoint`).
* :func:`connect_inline` and :func:`read_now`, for reads; in the rare moment SQLite answers
  busy, the caller reads through a :class:`ThreadConnection`, on a thread of its own, that
  waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T")

#: Set on every SQLite connection that writes.
PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON")
#: The WAL is checkpointed (on a thread of its own) once it is larger than this.
CHECKPOINT_BYTES = 8 * 1024 * 1024
#: The WAL is made to start over (see :func:`checkpoint`) once it holds more than this.
RESTART_BYTES = 32 * 1024 * 1024
#: How long starting the WAL over waits for readers, holding up writers meanwhile (ms).
RESTART_WAIT_MS = 100


class Step(NamedTuple):
    """One statement of :func:`run_steps`."""

    sql: str
    parameters: Any = ()
    #: ``parameters`` is a sequence of parameter rows (``executemany``).
    many: bool = False


def run_steps(connection: sqlite3.Connection, steps: Sequence[Step]) -> list[list[Any]]:
    """Run ``steps`` in order on ``connection`` (on its thread); the rows each read."""
    out: list[list[Any]] = []
    for sql, parameters, many in steps:
        cursor = (
            connection.executemany(sql, parameters) if many else connection.execute(sql, parameters)
        )
        out.append(cursor.fetchall() if cursor.description else [])
    return out


def end(connection: sqlite3.Connection, how: str) -> None:
    """Commit or roll back the open transaction, if one is open (on the connection's thread)."""
    if connection.in_transaction:
        getattr(connection, how)()


class ThreadConnection:
    """A :mod:`sqlite3` connection used from a thread of its own (see the module)."""

    def __init__(
        self,
        connection: sqlite3.Connection,
        thread: threading.Thread,
        jobs: queue.SimpleQueue[Callable[[], None] | None],
    ) -> None:
        self._connection = connection
        self._thread = thread
        self._jobs = jobs
        self.closed = False

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` on the connection's thread."""
        if self.closed:
            raise sqlite3.ProgrammingError("the connection is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        connection = self._connection

        def job() -> None:
            try:
                result = fn(connection)
            except BaseException as exc:  # handed to the caller
                _hand_back(loop, future, None, exc)
            else:
                _hand_back(loop, future, result, None)

        self._jobs.put(job)
        return await future

    def submit(self, fn: Callable[[sqlite3.Connection], object]) -> None:
        """``fn(connection)`` on the connection's thread, after what is queued; nobody
        waits for it and what it raises is dropped."""
        if self.closed:
            return
        connection = self._connection

        def job() -> None:
            with contextlib.suppress(Exception):
                fn(connection)

        self._jobs.put(job)

    async def run(self, steps: Sequence[Step]) -> list[list[Any]]:
        return await self.call(lambda c: run_steps(c, steps))

    async def end(self, how: str) -> None:
        """Commit or roll back whatever is open; asked and done on the connection's thread,
        after every call queued before it."""
        await self.call(lambda c: end(c, how))

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        connection = self._connection

        def finish() -> None:
            with contextlib.suppress(sqlite3.Error):
                connection.close()

        self._jobs.put(finish)
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join, 5.0)


def _hand_back(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    def settle() -> None:
        if future.done():
            return
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)

    with contextlib.suppress(RuntimeError):  # the loop is gone (process shutting down)
        loop.call_soon_threadsafe(settle)


def _serve(jobs: queue.SimpleQueue[Callable[[], None] | None]) -> None:
    while True:
        job = jobs.get()
        if job is None:
            return
        job()


async def connect(
    database: str, *, busy_timeout: float, pragmas: Sequence[str] = PRAGMAS
) -> ThreadConnection:
    """Open ``database`` (a path, or a ``file:`` URI) on a thread of its own, in autocommit
    mode (transactions are begun explicitly); ``busy_timeout``: seconds to wait for a lock."""
    jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
    opened: asyncio.Future[sqlite3.Connection] = asyncio.get_running_loop().create_future()
    loop = asyncio.get_running_loop()

    def open_() -> None:
        try:
            connection = sqlite3.connect(
                database,
                timeout=busy_timeout,
                isolation_level=None,
                check_same_thread=False,
                uri=database.startswith("file:"),
            )
            for pragma in pragmas:
                connection.execute(f"PRAGMA {pragma}")
        except BaseException as exc:
            _hand_back(loop, opened, None, exc)
            return
        _hand_back(loop, opened, connection, None)

    jobs.put(open_)
    # A connection left open must not keep the process alive at exit.
    thread = threading.Thread(target=_serve, args=(jobs,), name="calnotify-sqlite", daemon=True)
    thread.start()
    try:
        connection = await opened
    except BaseException:
        jobs.put(None)
        raise
    return ThreadConnection(connection, thread, jobs)


class InlineWriter:
    """A write connection used on the event loop's thread (see the module)."""

    def __init__(self, database: str, busy_timeout: float, checkpointer: ThreadConnection) -> None:
        self.connection = sqlite3.connect(
            database, timeout=0, isolation_level=None, uri=database.startswith("file:")
        )
        for pragma in (*PRAGMAS, "wal_autocheckpoint=0"):
            self.connection.execute(f"PRAGMA {pragma}")
        self.busy_timeout = busy_timeout
        self._checkpointer = checkpointer
        self._wal = f"{database.removeprefix('file:').partition('?')[0]}-wal"
        self._commits = 0
        self._checkpointing = False

    async def begin(self) -> None:
        """``BEGIN IMMEDIATE``, waiting (asynchronously) while another process writes;
        ``sqlite3.OperationalError`` "database is locked" past the busy timeout."""
        give_up = time.monotonic() + self.busy_timeout
        pause = 0.001
        while True:
            try:
                self.connection.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or time.monotonic() >= give_up:
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)

    def run(self, steps: Sequence[Step]) -> list[list[Any]]:
        return run_steps(self.connection, steps)

    def commit(self) -> None:
        end(self.connection, "commit")
        self._commits += 1
        if self._commits % 64 == 0:
            self._checkpoint_when_large()

    def rollback(self) -> None:
        end(self.connection, "rollback")

    def _checkpoint_when_large(self) -> None:
        try:
            large = os.stat(self._wal).st_size > CHECKPOINT_BYTES
        except OSError:
            return
        if large and not self._checkpointing:
            self._checkpointing = True  # one at a time: the commits go on meanwhile

            def job(connection: sqlite3.Connection) -> None:
                try:
                    checkpoint(connection)
                finally:
                    self._checkpointing = False

            self._checkpointer.submit(job)

    async def close(self) -> None:
        if self.connection.in_transaction:
            self.connection.rollback()
        self.connection.close()
        await self._checkpointer.close()


def checkpoint(connection: sqlite3.Connection) -> None:
    """Copy the WAL into the database; when it holds more than ``RESTART_BYTES``, have it
    start over too.

    A ``PASSIVE`` checkpoint copies without holding anyone up, and the next write starts
    the WAL over when no reader is using it. Under steady traffic one always is: the WAL
    then grows without bound (1.4 GB after a minute and a half of a process offered twice
    the bookings it can take), and every statement gets slower with it, on the event
    loop's thread (a booking's statements took up to half a second of CPU). ``TRUNCATE``
    waits for the readers of the moment to finish, holding the write lock meanwhile, and
    empties the file; after the passive copy little is left to do, so writers wait for
    milliseconds (asynchronously: :meth:`InlineWriter.begin`). A reader that takes longer
    (a backup) makes it give up after ``RESTART_WAIT_MS``, to be tried again later."""
    [(_, frames, _)] = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    (page,) = connection.execute("PRAGMA page_size").fetchone()
    if frames * page <= RESTART_BYTES:
        return  # the WAL starts over by itself
    (patience,) = connection.execute("PRAGMA busy_timeout").fetchone()
    connection.execute(f"PRAGMA busy_timeout={RESTART_WAIT_MS}")
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        connection.execute(f"PRAGMA busy_timeout={int(patience)}")


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
