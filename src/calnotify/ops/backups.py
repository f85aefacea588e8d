"""Backups that record their instant, and restores that send nothing twice (docs/semantics.md §10).

``calnotify db backup`` copies a SQLite database with SQLite's online backup and writes into
the copy, in a table of its own (``backup_info``, never part of the schema), the instant the
copy was taken. ``calnotify db restore`` copies a backup back into the configured database,
refusing while a ``serve`` or ``worker`` uses it, and then skips what may have been sent
after the backup was taken (:func:`calnotify.deliveries.lifecycle.skip_restored`): every
delivery still scheduled whose time to be sent lies between the backup's instant and now,
and every one that was being sent. ``calnotify db mark-restored --since`` does that last
part alone, on any database (after ``pg_restore``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import bindparam, func, select

from calnotify import __version__
from calnotify.db.engine import Database
from calnotify.db.statements import Statement
from calnotify.deliveries import lifecycle
from calnotify.deliveries.lifecycle.columns import SENDING, D
from calnotify.ops.presence import describe, live_processes

_LEASED = Statement(
    select(func.count().label("n"), func.max(D.lease_until).label("until")).where(
        D.status == SENDING, D.lease_until > bindparam("now")
    )
)


class BackupError(Exception):
    """A backup or restore that cannot be done; the text says why and what to do."""


@dataclass(frozen=True, slots=True)
class Restored:
    taken_at: datetime  # the backup's instant
    missed: lifecycle.Missed  # skipped, or (resend_missed) left to be sent
    resend_missed: bool


def backup_sqlite(source: Path, target: Path, taken_at: datetime, busy_timeout: float) -> None:
    """Copy ``source`` to ``target`` (a new file) and record ``taken_at`` in the copy.
    ``taken_at`` is read before the copy begins: the copy holds nothing later."""
    reading = sqlite3.connect(_read_only(source), uri=True, timeout=busy_timeout)
    try:
        copy = sqlite3.connect(target)
        try:
            # In one step: in WAL mode the copy's read transaction holds up no writer, while
            # a copy in steps starts over after every write the running service makes
            # between two steps, and under steady writes might never finish.
            reading.backup(copy, pages=-1)
            copy.execute("CREATE TABLE backup_info (taken_at TEXT NOT NULL, version TEXT NOT NULL)")
            copy.execute(
                "INSERT INTO backup_info VALUES (?, ?)", (taken_at.isoformat(), __version__)
            )
            copy.commit()
            # One self-contained file, whatever the database's journal mode.
            copy.execute("PRAGMA journal_mode=DELETE")
        finally:
            copy.close()
    finally:
        reading.close()


def backup_instant(backup: Path) -> datetime:
    """When ``backup`` was taken (what :func:`backup_sqlite` recorded in it)."""
    try:
        connection = sqlite3.connect(_read_only(backup), uri=True)
        try:
            rows = connection.execute("SELECT taken_at FROM backup_info").fetchall()
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        if "no such table" not in str(exc):
            raise BackupError(f"{backup} is not a calnotify SQLite backup ({exc})") from None
        rows = []
    if len(rows) != 1:
        raise BackupError(
            f"{backup} does not say when it was taken (it was not made by `calnotify db "
            "backup`): copy it into place with calnotify stopped, then run `calnotify db "
            "mark-restored --since INSTANT` with the time it was taken"
        )
    return datetime.fromisoformat(rows[0][0]).astimezone(UTC)


async def refuse_while_in_use(db: Database, now: datetime) -> None:
    """Raise :class:`BackupError` naming what uses the database: a process whose heartbeat
    is recent, or deliveries being sent right now."""
    try:
        running = await live_processes(db, now)
        [[leased]] = await db.fetch((_LEASED, {"now": now}))
    except sqlite3.OperationalError as exc:  # a database older than the processes table
        if "no such table" not in str(exc):
            raise
        return
    if running:
        raise BackupError(
            f"the database is in use by {describe(running, now)}: stop every calnotify serve "
            "and worker on it first (e.g. `systemctl stop calnotify`), then try again"
        )
    if leased.n:
        raise BackupError(
            f"{leased.n} deliveries are being sent right now (their lease runs until "
            f"{leased.until.isoformat()}): a calnotify process is sending, or one stopped "
            "abruptly; stop every serve and worker on the database, and try again once that "
            "time has passed"
        )


async def restore_sqlite(
    url: str, backup: Path, now: datetime, *, resend_missed: bool, busy_timeout: float
) -> Restored:
    """Copy ``backup`` into the SQLite database of ``url`` (with SQLite's backup API, which
    writes through the database's own journal), then skip what may have been sent after
    the backup was taken, unless ``resend_missed``."""
    taken_at = backup_instant(backup)
    target = _path_of(url)
    if await asyncio.to_thread(target.exists):
        db = Database(url, busy_timeout_ms=int(busy_timeout * 1000))
        try:
            await refuse_while_in_use(db, now)
        finally:
            await db.dispose()
    await asyncio.to_thread(_copy_into, backup, target, busy_timeout)
    db = Database(url, busy_timeout_ms=int(busy_timeout * 1000))
    try:
        return await mark_restored(db, taken_at, now, resend_missed=resend_missed)
    finally:
        await db.dispose()


async def mark_restored(
    db: Database, since: datetime, now: datetime, *, resend_missed: bool = False
) -> Restored:
    """Skip (``restored``) what a restored database would send again: see the module."""
    if since > now:
        raise BackupError(f"{since.isoformat()} is in the future: give the backup's instant")
    if resend_missed:
        return Restored(since, await lifecycle.missed(db, since, now), True)
    return Restored(since, await lifecycle.skip_restored(db, since, now), False)


def _copy_into(backup: Path, target: Path, busy_timeout: float) -> None:
    source = sqlite3.connect(_read_only(backup), uri=True, timeout=busy_timeout)
    try:
        restored = sqlite3.connect(target, timeout=busy_timeout)
        try:
            source.backup(restored, pages=-1)
            restored.execute("DROP TABLE IF EXISTS backup_info")
            tables = {r[0] for r in restored.execute("SELECT name FROM sqlite_master")}
            if "processes" in tables:  # the processes of the past
                restored.execute("DELETE FROM processes")
            restored.commit()
            restored.execute("PRAGMA journal_mode=WAL")
        finally:
            restored.close()
    finally:
        source.close()


def _read_only(path: Path) -> str:
    return f"file:{quote(str(path))}?mode=ro"


def _path_of(url: str) -> Path:
    from calnotify.db.urls import sqlite_path

    path = sqlite_path(url)
    if path is None:
        raise BackupError("restore copies SQLite backups: on PostgreSQL use pg_restore")
    return path
