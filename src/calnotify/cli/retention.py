"""``calnotify db prune`` and ``db vacuum``: retention applied now, and SQLite's file
made to shrink as retention frees space (docs/semantics.md §10)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from typing import Any

from calnotify.cli.common import AddCommand, CommandError, existing_database, on_database
from calnotify.config import Settings
from calnotify.db.engine import Database
from calnotify.db.urls import shown_database_url, sqlite_path


def add_commands(db_commands: Any, add: AddCommand) -> None:
    """``db prune`` and ``db vacuum``."""
    prune = add(
        db_commands,
        "prune",
        help="remove now what retention no longer keeps",
        description="Remove what the retention settings (CALNOTIFY_RETAIN_CONTENT_DAYS, "
        "CALNOTIFY_RETAIN_DELIVERIES_DAYS, CALNOTIFY_RETAIN_EVENTS_DAYS) no longer keep, in "
        "pages of short transactions, while the service runs; print how many rows of each "
        "kind it removed. serve and worker do the same in the background every "
        "CALNOTIFY_PRUNE_INTERVAL_SECONDS.",
    )
    prune.add_argument(
        "--dry-run", action="store_true", help="print what would be removed; remove nothing"
    )
    prune.set_defaults(handler=db_prune)
    vacuum = add(
        db_commands,
        "vacuum",
        help="SQLite: rebuild the file so that pruning shrinks it",
        description="Turn on SQLite's incremental auto-vacuum and rebuild the database file "
        "(VACUUM), so that the space retention frees is given back to the file system. "
        "Databases made by `calnotify db upgrade` have it from the start; older ones need this "
        "once. Refused while a calnotify serve or worker uses the database. On PostgreSQL, "
        "autovacuum does this work.",
    )
    vacuum.set_defaults(handler=db_vacuum)


def db_prune(args: argparse.Namespace, settings: Settings) -> int:
    from calnotify.clock import SystemClock
    from calnotify.ops.pruner import prune_now
    from calnotify.ops.retention import Retention, would_prune

    retention = Retention.of(settings)

    async def work(db: Database) -> dict[str, int]:
        if args.dry_run:
            return await would_prune(db, retention, datetime.now(UTC))
        busy = settings.sqlite_busy_timeout_ms / 1000
        return await prune_now(db, retention, SystemClock(), busy)

    counts = on_database(settings, work)
    verb = "would remove" if args.dry_run else "removed"
    for name, count in counts.items():
        print(f"{verb} {count} {name}")
    return 0


def db_vacuum(_args: argparse.Namespace, settings: Settings) -> int:
    from calnotify.ops.backups import BackupError, refuse_while_in_use
    from calnotify.ops.pruner import vacuum_sqlite

    path = sqlite_path(settings.database_url)
    if path is None:
        print("PostgreSQL: nothing to do, autovacuum gives the space back", file=sys.stderr)
        return 0
    existing_database(settings)

    async def check(db: Database) -> None:
        await refuse_while_in_use(db, datetime.now(UTC))

    try:
        on_database(settings, check)
    except BackupError as exc:
        raise CommandError(f"not vacuumed: {exc}") from None
    before, after = asyncio.run(
        asyncio.to_thread(vacuum_sqlite, str(path), settings.sqlite_busy_timeout_ms / 1000)
    )
    shown = shown_database_url(settings.database_url)
    print(f"vacuumed {shown}: {before:,} bytes before, {after:,} after; incremental auto-vacuum on")
    return 0
