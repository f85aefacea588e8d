"""Engines and sessions for SQLite (embedded default) and PostgreSQL (scale-out).

``CALNOTIFY_DATABASE_URL`` is given without a driver (``sqlite:///path``,
``postgresql://user@host:port/db``); the async driver is chosen here.

SQLite has one writer. Write transactions start with ``BEGIN IMMEDIATE`` so that two
writers queue on the busy timeout instead of one failing with "database is locked" when
it upgrades a read lock; reads use a separate engine with deferred transactions so they
never wait for a writer (WAL).

A request's hot reads skip the session: :meth:`Database.fetch` runs prepared selects
(:mod:`calnotify.db.reads`) straight on a connection, with no unit of work to open and end.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from calnotify.db import sqlite_driver
from calnotify.db.reads import Change, Query

_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg"}
_ALIASES = {"postgres": "postgresql"}


class DatabaseURLError(ValueError):
    pass


def async_url(raw: str) -> URL:
    """Map a driverless URL to the async driver calnotify uses for its dialect."""
    try:
        url = make_url(raw)
    except Exception as exc:  # sqlalchemy raises ArgumentError with an unhelpful text
        raise DatabaseURLError(f"not a database URL: {masked_database_url(raw)!r}") from exc
    backend = _ALIASES.get(url.get_backend_name(), url.get_backend_name())
    if backend not in _DRIVERS:
        raise DatabaseURLError(
            f"unsupported database {backend!r}: use sqlite:///path or postgresql://user@host/db"
        )
    return url.set(drivername=_DRIVERS[backend])


def masked_database_url(raw: str) -> str:
    """``raw`` with its password shown as ``***``, for logs and messages. Never raises.

    Works on the text, not on a parsed URL: a password with an unescaped ``@`` (which
    SQLAlchemy splits at the first ``@``) is still hidden whole, as is a ``password=``
    query parameter.
    """
    return _replace_password(raw, "***")


def database_url_without_password(raw: str) -> str:
    """``raw`` with no password at all, for a command such as ``pg_dump URL`` that then
    takes it from ``PGPASSWORD`` or ``~/.pgpass``. The scheme loses any ``+driver``."""
    scheme, sep, rest = raw.partition("://")
    return _replace_password(f"{scheme.partition('+')[0]}{sep}{rest}", None)


def _replace_password(raw: str, mask: str | None) -> str:
    scheme, sep, rest = raw.partition("://")
    if not sep or scheme.lower().startswith("sqlite"):  # a file path has no password
        return raw
    main, qmark, query = rest.partition("?")
    userinfo, at, hostpart = main.rpartition("@")
    if at and ":" in userinfo:
        user = userinfo.partition(":")[0]
        main = f"{user}:{mask}@{hostpart}" if mask is not None else f"{user}@{hostpart}"
    if mask is not None:
        query = re.sub(r"(^|&)(password=)[^&]*", rf"\1\2{mask}", query, flags=re.IGNORECASE)
    else:
        kept = [p for p in query.split("&") if p and not p.lower().startswith("password=")]
        query = "&".join(kept)
        qmark = qmark if query else ""
    return f"{scheme}{sep}{main}{qmark}{query}"


def shown_database_url(raw: str) -> str:
    """The URL with its password masked; for a SQLite file, with the absolute path it
    resolves to when the URL does not show it (a relative path). Never raises."""
    try:
        path = sqlite_path(raw)
    except DatabaseURLError:
        path = None
    shown = masked_database_url(raw)
    return f"{shown} ({path})" if path is not None and str(path) not in shown else shown


def sqlite_path(raw: str) -> Path | None:
    """The absolute path of a SQLite file database (None: PostgreSQL or in-memory)."""
    url = async_url(raw)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).expanduser().resolve()


def describe_database_error(exc: BaseException, raw_url: str) -> str | None:
    """One line saying why the database cannot be used and what to do; None if not a
    database connection problem."""
    orig = getattr(exc, "orig", None) or exc
    if not type(orig).__module__.startswith(("sqlite3", "psycopg")):
        return None
    text = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    path = sqlite_path(raw_url)
    if path is not None:
        return _describe_sqlite_error(text, path)
    shown = masked_database_url(raw_url)
    text = " ".join(text.removeprefix("connection failed: ").replace("FATAL:", "").split())
    if missing := re.search(r'database "[^"]*" does not exist', text):
        name = async_url(raw_url).database or "calnotify"
        return (
            f"{missing.group(0)} ({shown}): create it (`createdb {name}`) "
            "or fix CALNOTIFY_DATABASE_URL"
        )
    if "authentication failed" in text or "no password supplied" in text:
        return (
            f"the database refused the login ({shown}): "
            "check the user and password in CALNOTIFY_DATABASE_URL"
        )
    if "refused" in text or "timeout" in text.lower() or "resolve" in text or "translate" in text:
        return (
            f"cannot reach the database at {shown}: {text}; "
            "is PostgreSQL running there? (CALNOTIFY_DATABASE_URL)"
        )
    return f"database error ({shown}): {text}"


def _describe_sqlite_error(text: str, path: Path) -> str:
    lowered = text.lower()
    if "locked" in lowered or "busy" in lowered:
        return (
            f"the SQLite database {path} is locked: another process kept it busy for longer "
            "than this command waits (CALNOTIFY_SQLITE_BUSY_TIMEOUT_MS); try again"
        )
    if not path.parent.is_dir():
        why = f"the folder {path.parent} does not exist"
    elif path.is_dir():
        why = "that is a folder"
    elif not os.access(path.parent, os.W_OK):
        why = f"no permission to write in {path.parent}"
    elif path.exists() and not os.access(path, os.W_OK):
        why = f"no permission to write {path}"
    elif "unable to open" in lowered:
        why = text
    else:
        return f"SQLite error on {path}: {text} (CALNOTIFY_DATABASE_URL)"
    return f"cannot open the SQLite database {path}: {why} (CALNOTIFY_DATABASE_URL)"


#: Seconds a PostgreSQL connection of a command (migrations, ``check``, admin commands)
#: may take to open, so that an unreachable host fails in seconds rather than minutes.
CONNECT_TIMEOUT_SECONDS = 10


def connect_args(url: URL, timeout: int = CONNECT_TIMEOUT_SECONDS) -> dict[str, Any]:
    """Driver arguments bounding how long a connection takes to open (PostgreSQL only;
    a ``connect_timeout`` in the URL itself wins)."""
    if url.get_backend_name() != "postgresql" or "connect_timeout" in url.query:
        return {}
    return {"connect_timeout": timeout}


def sync_url(raw: str) -> URL:
    """The same database through a synchronous driver (used by Alembic and admin commands)."""
    url = async_url(raw)
    return url.set(drivername="sqlite" if url.get_backend_name() == "sqlite" else url.drivername)


class Database:
    """Owns the engines of one database and hands out sessions."""

    def __init__(
        self,
        raw_url: str,
        *,
        pool_size: int = 10,
        busy_timeout_ms: int = 10_000,
        connect_timeout: int | None = None,
    ):
        """``connect_timeout``: seconds a PostgreSQL connection may take to open (None:
        the driver's default, which waits for the operating system to give up)."""
        self.url = async_url(raw_url)
        self.dialect = self.url.get_backend_name()
        if self.dialect == "sqlite":
            self.engine = _sqlite_engine(self.url, busy_timeout_ms, begin="BEGIN IMMEDIATE")
            self.read_engine = _sqlite_engine(self.url, busy_timeout_ms, begin="BEGIN")
        else:
            timeout = {} if connect_timeout is None else connect_args(self.url, connect_timeout)
            self.engine = create_async_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
                connect_args=timeout,
            )
            self.read_engine = self.engine
            self._autocommit_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._busy_timeout_ms = busy_timeout_ms
        self._reader: sqlite_driver.OneTripConnection | None = None
        self._inline: sqlite3.Connection | None = None
        self._writer: sqlite_driver.OneTripConnection | None = None
        self._reader_lock = asyncio.Lock()
        self.on_wake: list[Callable[[], None]] = []
        #: Who the callers' tokens are (see calnotify.auth.tokens), for a second at most.
        self.principals: ShortLived[Any] = ShortLived(PRINCIPAL_SECONDS)
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

    async def fetch(self, *reads: tuple[Query, Mapping[str, Any]]) -> list[list[Any]]:
        """The rows of each (query, parameters), outside any unit of work: for the reads of
        a request that a statement or two answer, each a bounded page of an index. Never
        waits for a writer.

        SQLite reads them right here, on the event loop's thread (in one transaction when
        there are several): a read of a few indexed rows takes less time than handing it
        to another thread and back. That connection never waits for a lock; in the rare
        moment SQLite answers busy, the read goes to a connection on a thread of its own
        that waits. PostgreSQL reads on a pooled connection in autocommit mode.
        """
        if self.is_sqlite:
            dialect = self.read_engine.dialect
            statements = [q.parameters(dialect, p) for q, p in reads]
            try:
                raw = sqlite_driver.read_now(self._inline or self._open_inline(), statements)
            except sqlite3.OperationalError as exc:
                if not sqlite_driver.is_busy(exc):
                    raise
                reader = self._reader or await self._open_reader()
                raw = await reader.fetch(statements)
            return [q.rows(dialect, r) for (q, _), r in zip(reads, raw, strict=True)]
        async with self._autocommit_engine.connect() as connection:
            return [list((await connection.execute(q.statement, p)).all()) for q, p in reads]

    def _open_inline(self) -> sqlite3.Connection:
        self._inline = sqlite_driver.connect_inline(self.url.database or ":memory:")
        return self._inline

    def writer(self) -> AbstractAsyncContextManager[Writer]:
        """A write transaction of prepared statements (:class:`~calnotify.db.reads.Query`,
        :class:`~calnotify.db.reads.Change`), with no session: for a change of a row or
        two that plans nothing. Commits when the block ends cleanly, rolls back otherwise.

        On SQLite it queues for the process's write lock like a write unit of work and runs
        on a connection kept for it: ``BEGIN IMMEDIATE`` goes to its thread with the first
        statements, and what is checked and written last with ``COMMIT``, so that checking
        a row or two and writing one is one trip. On PostgreSQL, on a pooled connection.
        """
        if self._write_lock is None:
            return self._postgres_writer()
        return _SQLiteWriter(self)

    @asynccontextmanager
    async def _postgres_writer(self) -> AsyncIterator[Writer]:
        async with self.engine.connect() as connection:
            await connection.begin()
            writer = _PostgresWriter(connection)
            try:
                yield writer
                await writer.commit()
            except BaseException:
                await connection.rollback()
                raise

    async def _open_writer(self) -> sqlite_driver.OneTripConnection:
        database = self.url.database or ":memory:"
        writer = await sqlite_driver.connect(
            database, busy_timeout=self._busy_timeout_ms / 1000, isolation_level=None
        )
        await writer.run([sqlite_driver.Step(f"PRAGMA {p}") for p in SQLITE_PRAGMAS])
        self._writer = writer
        return writer

    async def _open_reader(self) -> sqlite_driver.OneTripConnection:
        async with self._reader_lock:
            if self._reader is None:
                database = self.url.database or ":memory:"
                reader = await sqlite_driver.connect(
                    database, busy_timeout=self._busy_timeout_ms / 1000, isolation_level=None
                )
                await reader.fetch([("PRAGMA query_only=ON", ())])
                self._reader = reader
            return self._reader

    @asynccontextmanager
    async def _unit(self, *, write: bool) -> AsyncIterator[AsyncSession]:
        maker = self._write if write else self._read
        async with maker() as session:
            try:
                yield session
                if write:
                    await session.commit()
                    if session.info.pop(PRINCIPALS_CHANGED, False):
                        self.principals.clear()
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
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        if self._writer is not None:
            await self._writer.close()
            self._writer = None


#: Seconds a resolved token is trusted without asking the database again: a token revoked
#: by another process (``calnotify tokens revoke``, another API process) stops working
#: within this time; one revoked through this process's :class:`Database`, at once.
PRINCIPAL_SECONDS = 1.0
#: ``session.info`` key: this unit of work changed tokens; forget the resolved ones.
PRINCIPALS_CHANGED = "principals_changed"

V = TypeVar("V")


class ShortLived(Generic[V]):
    """A map whose entries are forgotten ``seconds`` after they were put (and all at once
    when it holds ``limit``)."""

    def __init__(self, seconds: float, limit: int = 10_000) -> None:
        self.seconds = seconds
        self.limit = limit
        self._entries: dict[str, tuple[float, V]] = {}

    def get(self, key: str) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            self._entries.pop(key, None)
            return None
        return entry[1]

    def put(self, key: str, value: V) -> None:
        if len(self._entries) >= self.limit:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + self.seconds, value)

    def clear(self) -> None:
        self._entries.clear()


#: Set on every SQLite connection that writes.
SQLITE_PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON")


class Writer(Protocol):
    """The statements of :meth:`Database.writer`."""

    async def fetch(self, *reads: tuple[Query, Mapping[str, Any]]) -> list[list[Any]]:
        """The rows of each (query, parameters), in this transaction."""
        ...

    async def expect(self, read: tuple[Query, Mapping[str, Any]], rows: Sequence[Any]) -> None:
        """In this transaction, ``read`` still reads ``rows`` (what it read before it);
        :class:`~calnotify.db.sqlite_driver.Changed` is raised when it does not. On SQLite,
        checked in the same trip as the statements after it or the commit."""
        ...

    async def write(self, change: Change, rows: Sequence[Mapping[str, Any]]) -> None:
        """``change`` once per row of values, before anything asked after it (on SQLite,
        in the same trip as the next statements or the commit)."""
        ...


Changed = sqlite_driver.Changed


class _SQLiteWriter:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._dialect = db.engine.dialect
        self._pending: list[sqlite_driver.Step] = []

    async def __aenter__(self) -> _SQLiteWriter:
        db = self._db
        lock = db._write_lock
        assert lock is not None
        await lock.acquire()
        try:
            self._connection = db._writer or await db._open_writer()
        except BaseException:
            lock.release()
            raise
        return self

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        lock = self._db._write_lock
        assert lock is not None
        try:
            if kind is None:
                try:
                    await self.commit()
                except BaseException:
                    await self.rollback()
                    raise
            else:
                await self.rollback()
        finally:
            lock.release()

    async def _run(self, steps: list[sqlite_driver.Step]) -> list[tuple[list[Any], int]]:
        ahead, self._pending = self._pending, []
        if not self._connection.in_transaction:
            ahead = [sqlite_driver.Step("BEGIN IMMEDIATE"), *ahead]
        return (await self._connection.run([*ahead, *steps]))[len(ahead) :]

    async def fetch(self, *reads: tuple[Query, Mapping[str, Any]]) -> list[list[Any]]:
        dialect = self._dialect
        done = await self._run([sqlite_driver.Step(*q.parameters(dialect, p)) for q, p in reads])
        return [q.rows(dialect, rows) for (q, _), (rows, _) in zip(reads, done, strict=True)]

    async def expect(self, read: tuple[Query, Mapping[str, Any]], rows: Sequence[Any]) -> None:
        query, parameters = read
        dialect, expected = self._dialect, list(rows)
        sql, values = query.parameters(dialect, parameters)
        check = lambda found: query.rows(dialect, found) == expected  # noqa: E731
        self._pending.append(sqlite_driver.Step(sql, values, check=check))

    async def write(self, change: Change, rows: Sequence[Mapping[str, Any]]) -> None:
        self._pending.append(sqlite_driver.Step(*change.parameters(self._dialect, rows), many=True))

    async def commit(self) -> None:
        if self._pending or self._connection.in_transaction:
            await self._run([sqlite_driver.Step("COMMIT")])

    async def rollback(self) -> None:
        self._pending = []
        await self._connection.rollback()


class _PostgresWriter:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def fetch(self, *reads: tuple[Query, Mapping[str, Any]]) -> list[list[Any]]:
        return [list((await self._connection.execute(q.statement, p)).all()) for q, p in reads]

    async def expect(self, read: tuple[Query, Mapping[str, Any]], rows: Sequence[Any]) -> None:
        [found] = await self.fetch(read)
        if [tuple(r) for r in found] != [tuple(r) for r in rows]:
            raise Changed(str(read[0].statement))

    async def write(self, change: Change, rows: Sequence[Mapping[str, Any]]) -> None:
        await self._connection.execute(change.statement, list(rows))

    async def commit(self) -> None:
        await self._connection.commit()


def _sqlite_engine(url: URL, busy_timeout_ms: int, *, begin: str) -> AsyncEngine:
    database = url.database or ":memory:"

    async def connect() -> Any:
        return await sqlite_driver.connect(database, busy_timeout=busy_timeout_ms / 1000)

    engine = create_async_engine(url, async_creator=connect)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy's "begin" event own transaction start (pysqlite's implicit
        # BEGIN would defer the write lock until the first write).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine
