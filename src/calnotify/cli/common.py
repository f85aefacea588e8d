"""What every ``calnotify`` command shares: its errors, argument types, and the unit of work
of the admin commands."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn, Protocol, TypeVar

from calnotify.config import Settings
from calnotify.db.engine import Database
from calnotify.db.urls import CONNECT_TIMEOUT_SECONDS, masked_database_url, sqlite_path


class CommandError(Exception):
    """A mistake the user can fix; its text says what and how."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage mistakes are two lines: what is wrong, where the
    usage is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n{self.prog}: see `{self.prog} --help`\n")


class AddCommand(Protocol):
    """Adds a subcommand (with the common ``--debug``) to a group of commands."""

    def __call__(self, commands: Any, name: str, **options: Any) -> argparse.ArgumentParser: ...


def integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def port(text: str) -> int:
    number = integer(text)
    if not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{number} is not a TCP port (1 to 65535)")
    return number


def at_least_one(text: str) -> int:
    number = integer(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{number} is less than 1")
    return number


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def warn(text: str) -> None:
    """A warning of an admin command: on stderr, so that stdout stays JSON."""
    print(f"calnotify: warning: {text}", file=sys.stderr)


def existing_database(settings: Settings) -> None:
    """Admin commands work on the database ``serve`` uses; they never create a new one."""
    path = sqlite_path(settings.database_url)
    if path is None or path.exists():
        return
    shown = masked_database_url(settings.database_url)
    raise CommandError(
        f"no database at {path} (CALNOTIFY_DATABASE_URL={shown}, "
        f"relative paths start from the current folder {Path.cwd()}): run this where "
        "`calnotify serve` runs, set CALNOTIFY_DATABASE_URL, or create it with "
        "`calnotify db upgrade`"
    )


AdminAction = Callable[[argparse.Namespace, Any], Awaitable[Any]]
T = TypeVar("T")


def on_database(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """``work(db)`` on the configured database, which must exist and be at the latest
    migration already: an admin command never migrates (a newer calnotify would otherwise
    upgrade a production database as a side effect); ``serve`` and ``db upgrade`` do."""
    from calnotify.db.migrate import require_latest

    existing_database(settings)
    require_latest(settings.database_url)

    async def run() -> T:
        db = Database(
            settings.database_url,
            busy_timeout_ms=settings.sqlite_busy_timeout_ms,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            prepare=settings.database_prepare,
        )
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(run())


def admin(action: AdminAction) -> Callable[[argparse.Namespace, Settings], int]:
    """Run ``action`` in one unit of work (:func:`on_database`) and print its JSON result."""

    def handler(args: argparse.Namespace, settings: Settings) -> int:
        async def work(db: Database) -> Any:
            async with db.session() as session:
                return await action(args, session)

        print(json.dumps(on_database(settings, work), indent=2))
        return 0

    return handler


async def require_location(session: Any, location_id: str) -> Any:
    """The location with this id; a :class:`CommandError` when there is none."""
    from calnotify.models import Location

    location = await session.get(Location, location_id)
    if location is None:
        raise CommandError(f"no location {location_id} (`calnotify locations list` shows them)")
    return location


def phone(text: str, country: str, option: str) -> str:
    """A phone number given on the command line, in E.164 (read in the location's
    ``country`` when it has no ``+``); a :class:`CommandError` naming ``option`` otherwise."""
    from calnotify.channels.addresses import AddressError, normalise_number

    try:
        return normalise_number(text, country)
    except AddressError as exc:
        raise CommandError(f"{option}: {exc}") from None


def iso(moment: Any) -> str:
    from calnotify.api.types import format_timestamp

    return format_timestamp(moment)
