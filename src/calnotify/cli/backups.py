"""``calnotify db backup``, ``db restore`` and ``db mark-restored`` (docs/semantics.md §10: a
backup records its instant; a restore sends nothing twice)."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from calnotify.cli.common import CommandError, existing_database, iso, on_database
from calnotify.config import Settings
from calnotify.db.urls import (
    database_url_without_password,
    shown_database_url,
    sqlite_path,
)

if TYPE_CHECKING:
    from calnotify.ops.backups import Restored


def instant(text: str) -> datetime:
    """An ISO 8601 instant with its zone (``Z`` or an offset), as UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 instant (2030-01-01T02:00:00Z)"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no time zone: add Z for UTC, or its offset (+02:00)"
        )
    return value.astimezone(UTC)


def db_backup(args: argparse.Namespace, settings: Settings) -> int:
    from calnotify.ops.backups import backup_sqlite

    source = sqlite_path(settings.database_url)
    if source is None:
        url = shlex.quote(database_url_without_password(settings.database_url))
        raise CommandError(
            "db backup copies SQLite databases; on PostgreSQL use pg_dump, e.g. "
            f"`pg_dump --format=custom --file=calnotify.dump {url}` with the password in "
            "PGPASSWORD or ~/.pgpass, and note when it starts (`date -u +%Y-%m-%dT%H:%M:%SZ`) "
            "for `calnotify db mark-restored --since` after a restore"
        )
    existing_database(settings)
    target = Path(args.path).expanduser().resolve()
    if target.exists():
        raise CommandError(f"{target} already exists: choose another path or remove it first")
    if not target.parent.is_dir():
        raise CommandError(f"cannot write {target}: the folder {target.parent} does not exist")
    taken_at = datetime.now(UTC)
    backup_sqlite(source, target, taken_at, settings.sqlite_busy_timeout_ms / 1000)
    size = target.stat().st_size
    print(
        f"backed up {source} to {target} ({size:,} bytes), taken at {iso(taken_at)}",
        file=sys.stderr,
    )
    return 0


def db_restore(args: argparse.Namespace, settings: Settings) -> int:
    from calnotify.ops.backups import BackupError, restore_sqlite

    if sqlite_path(settings.database_url) is None:
        raise CommandError(
            "db restore restores SQLite backups; on PostgreSQL stop every calnotify serve and "
            "worker, run pg_restore (e.g. `pg_restore --clean --if-exists --dbname=URL "
            "calnotify.dump`), then `calnotify db mark-restored --since INSTANT` with the time "
            "the dump was taken"
        )
    backup = Path(args.backup).expanduser().resolve()
    if not backup.is_file():
        raise CommandError(f"no backup at {backup}")
    try:
        restored = asyncio.run(
            restore_sqlite(
                settings.database_url,
                backup,
                datetime.now(UTC),
                resend_missed=args.resend_missed,
                busy_timeout=settings.sqlite_busy_timeout_ms / 1000,
            )
        )
    except BackupError as exc:
        raise CommandError(f"not restored: {exc}") from None
    shown = shown_database_url(settings.database_url)
    print(f"restored {backup} (taken at {iso(restored.taken_at)}) into {shown}")
    _print_missed(restored)
    return 0


def db_mark_restored(args: argparse.Namespace, settings: Settings) -> int:
    from calnotify.db.engine import Database
    from calnotify.ops.backups import BackupError, mark_restored, refuse_while_in_use

    async def work(db: Database) -> Restored:
        now = datetime.now(UTC)
        await refuse_while_in_use(db, now)
        return await mark_restored(db, args.since, now)

    try:
        restored = on_database(settings, work)
    except BackupError as exc:
        raise CommandError(f"nothing marked: {exc}") from None
    _print_missed(restored)
    return 0


def _print_missed(restored: Restored) -> None:
    missed = restored.missed
    since = iso(restored.taken_at)
    if restored.resend_missed:
        print(
            f"left to be sent again (--resend-missed): {missed.due} due since {since}, "
            f"{missed.in_flight} being sent when the backup was taken"
        )
    else:
        print(
            f"skipped (reason restored): {missed.due} due since {since}, "
            f"{missed.in_flight} being sent when the backup was taken"
        )
    print(f"still scheduled: {missed.later} due later")
