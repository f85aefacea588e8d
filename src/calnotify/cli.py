"""The ``calnotify`` command: serve the API, migrate the database, manage tenants.

Admin commands print JSON on stdout and errors on stderr (exit status 1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import shlex
import signal
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

from calnotify import __version__
from calnotify.auth.scopes import ALL_SCOPES
from calnotify.config import Settings, SettingsError, get_settings
from calnotify.db.engine import Database
from calnotify.db.urls import (
    CONNECT_TIMEOUT_SECONDS,
    DatabaseURLError,
    database_url_without_password,
    describe_database_error,
    masked_database_url,
    shown_database_url,
    sqlite_path,
)
from calnotify.errors import AppError


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    debug = args.debug or os.environ.get("CALNOTIFY_LOG_LEVEL", "").strip().lower() == "debug"
    settings: Settings | None = None
    try:
        settings = get_settings()
        result: int = args.handler(args, settings)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        explained = _explain(exc, settings)
        if debug:
            traceback.print_exc()
        print(f"calnotify: {explained or _unexpected(exc)}", file=sys.stderr)
        if explained is None and not debug:
            print("calnotify: run again with --debug to see the traceback", file=sys.stderr)
        return 1
    return result


class CommandError(Exception):
    """A mistake the user can fix; its text says what and how."""


def _explain(exc: BaseException, settings: Settings | None) -> str | None:
    """One line naming the problem and what to do, or None for an unexpected error."""
    from calnotify.db.migrate import SchemaVersionError

    if isinstance(exc, SettingsError | CommandError | SchemaVersionError):
        return str(exc)
    if isinstance(exc, DatabaseURLError):
        return f"CALNOTIFY_DATABASE_URL: {exc}"
    if isinstance(exc, AppError):
        return exc.message
    if settings is not None:
        return describe_database_error(exc, settings.database_url)
    return None


def _unexpected(exc: BaseException) -> str:
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return f"unexpected error: {type(exc).__name__}: {first_line}".rstrip(": ")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage mistakes are two lines: what is wrong, where the
    usage is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n{self.prog}: see `{self.prog} --help`\n")


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _port(text: str) -> int:
    port = _integer(text)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (1 to 65535)")
    return port


def _at_least_one(text: str) -> int:
    number = _integer(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{number} is less than 1")
    return number


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (seconds > 0 and math.isfinite(seconds)):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    debug_help = "show the full traceback of an error (also when CALNOTIFY_LOG_LEVEL=debug)"
    # Every subcommand takes --debug too (`calnotify serve --debug`); SUPPRESS leaves the
    # top level's value alone when it is not repeated there.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)

    def add(commands: Any, name: str, **options: Any) -> argparse.ArgumentParser:
        subcommand: argparse.ArgumentParser = commands.add_parser(name, parents=[common], **options)
        return subcommand

    parser = _Parser(
        prog="calnotify",
        description="Self-hosted calendar notifications with HighLevel's API. "
        "Settings come from CALNOTIFY_* environment variables (see the README).",
    )
    parser.add_argument("--version", action="version", version=f"calnotify {__version__}")
    parser.add_argument("--debug", action="store_true", help=debug_help)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    serve = add(
        commands,
        "serve",
        help="run the HTTP API (migrates the database first)",
        description="Run the HTTP API. The database is migrated to the latest schema first.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8000, help="TCP port (default 8000)")
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="serve the API only; leave sending to `calnotify worker` processes",
    )
    serve.add_argument(
        "--workers",
        type=_at_least_one,
        default=1,
        metavar="N",
        help="HTTP server processes (default 1); each also dispatches unless --no-worker",
    )
    serve.add_argument(
        "--concurrency",
        type=_at_least_one,
        default=None,
        metavar="N",
        help="dispatch loops in this process (default CALNOTIFY_DISPATCH_CONCURRENCY)",
    )
    serve.set_defaults(handler=_serve)

    worker = add(
        commands,
        "worker",
        help="send due notifications (no HTTP API)",
        description="Claim and send due deliveries until stopped. Any number of workers and "
        "servers may run against one database; SIGTERM or Ctrl-C finishes the messages in "
        "flight and exits.",
    )
    worker.add_argument(
        "--concurrency",
        type=_at_least_one,
        default=None,
        metavar="N",
        help="dispatch loops, each claiming its own batches (default "
        "CALNOTIFY_DISPATCH_CONCURRENCY)",
    )
    worker.set_defaults(handler=_worker)

    db = add(commands, "db", help="database schema", description="Database schema.")
    db_commands = db.add_subparsers(title="commands", metavar="COMMAND", required=True)
    upgrade = add(
        db_commands,
        "upgrade",
        help="apply the migrations to the configured database",
        description="Apply the Alembic migrations to CALNOTIFY_DATABASE_URL.",
    )
    upgrade.set_defaults(handler=_db_upgrade)
    backup = add(
        db_commands,
        "backup",
        help="copy the SQLite database to a file while the service runs",
        description="Copy the SQLite database to PATH with SQLite's online backup: a consistent "
        "copy, taken while calnotify keeps running. On PostgreSQL, use pg_dump.",
    )
    backup.add_argument("path", metavar="PATH", help="the file to write (must not exist)")
    backup.set_defaults(handler=_db_backup)

    check = add(
        commands,
        "check",
        help="check the database and the configured providers",
        description="Check that the database is reachable and at the latest migration, that "
        "the SMTP server and Twilio accept the configured credentials (nothing is sent), and "
        "that CALNOTIFY_PUBLIC_URL is set when Twilio reports delivery. One line per check; "
        "exit status 1 when any fails, so it can serve as a health check.",
    )
    check.add_argument(
        "--timeout", type=_seconds, default=10, metavar="S", help="seconds per check (default 10)"
    )
    check.set_defaults(handler=_check)

    locations = add(
        commands,
        "locations",
        help="manage locations",
        description="Manage locations (sub-accounts).",
    )
    loc_commands = locations.add_subparsers(title="commands", metavar="COMMAND", required=True)
    loc_create = add(
        loc_commands,
        "create",
        help="create a location and print it as JSON",
        description="Create a location and print it as JSON (with its id).",
    )
    loc_create.add_argument("--name", required=True)
    loc_create.add_argument("--email", default="", help="the business email")
    loc_create.add_argument("--phone", default="", help="E.164, e.g. +14155550100")
    loc_create.add_argument("--timezone", default="UTC", help="IANA zone (default UTC)")
    loc_create.set_defaults(handler=_admin(_create_location))
    loc_list = add(
        loc_commands,
        "list",
        help="list every location as JSON",
        description="List every location as JSON.",
    )
    loc_list.set_defaults(handler=_admin(_list_locations))

    users = add(commands, "users", help="manage users", description="Manage users.")
    user_commands = users.add_subparsers(title="commands", metavar="COMMAND", required=True)
    user_create = add(
        user_commands,
        "create",
        help="create a user of a location and print it as JSON",
        description="Create a user of a location and print it as JSON (with its id).",
    )
    user_create.add_argument("--location", required=True, metavar="ID", help="location id")
    user_create.add_argument("--email", required=True)
    user_create.add_argument("--first-name", default="")
    user_create.add_argument("--last-name", default="")
    user_create.add_argument("--phone", default="", help="E.164, e.g. +14155550100")
    user_create.add_argument("--role", choices=["admin", "user"], default="user")
    user_create.set_defaults(handler=_admin(_create_user))
    user_list = add(
        user_commands,
        "list",
        help="list the users of a location as JSON",
        description="List the users of a location as JSON.",
    )
    user_list.add_argument("--location", required=True, metavar="ID", help="location id")
    user_list.set_defaults(handler=_admin(_list_users))

    tokens = add(
        commands, "tokens", help="manage API tokens", description="Manage location access tokens."
    )
    token_commands = tokens.add_subparsers(title="commands", metavar="COMMAND", required=True)
    token_create = add(
        token_commands,
        "create",
        help="issue a token for a location and print it once",
        description="Issue a location access token. The token is printed once and stored "
        "hashed. Without --scope it gets every scope.",
    )
    token_create.add_argument("--location", required=True, metavar="ID", help="location id")
    token_create.add_argument(
        "--scope",
        action="append",
        metavar="S",
        choices=ALL_SCOPES,
        help=f"a scope to grant (repeatable); one of: {', '.join(ALL_SCOPES)}",
    )
    token_create.set_defaults(handler=_admin(_create_token))
    token_revoke = add(
        token_commands,
        "revoke",
        help="revoke a token by its id",
        description="Revoke a token by its id; it stops working at once.",
    )
    token_revoke.add_argument("token_id", metavar="TOKEN_ID")
    token_revoke.set_defaults(handler=_admin(_revoke_token))
    token_list = add(
        token_commands,
        "list",
        help="list the tokens of a location (never their secrets)",
        description="List the tokens of a location as JSON: id, scopes, when created and "
        "revoked. The secret itself is never stored, so it cannot be shown.",
    )
    token_list.add_argument("--location", required=True, metavar="ID", help="location id")
    token_list.set_defaults(handler=_admin(_list_tokens))

    senders = add(
        commands,
        "senders",
        help="manage the addresses and numbers a location may send from",
        description="Manage a location's allowed senders. Email goes out from "
        "CALNOTIFY_EMAIL_FROM's address unless a rule's fromAddress is allowed here (else it "
        "becomes the Reply-To); SMS and WhatsApp from the configured Twilio numbers unless a "
        "rule's fromNumber is allowed here. Allow only addresses of domains whose SPF/DKIM "
        "let your SMTP server send for them, and numbers of your Twilio account.",
    )
    sender_commands = senders.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for action, handler, verb in (
        ("add", _add_sender, "allow"),
        ("remove", _remove_sender, "stop allowing"),
    ):
        sender = add(
            sender_commands,
            action,
            help=f"{verb} an email address or number for a location",
            description=f"{verb.capitalize()} an email address or a phone number as a sender "
            "of a location; prints it as JSON.",
        )
        sender.add_argument("--location", required=True, metavar="ID", help="location id")
        which = sender.add_mutually_exclusive_group(required=True)
        which.add_argument("--email", metavar="ADDR", help="an email address")
        which.add_argument("--number", metavar="+E164", help="a phone number, e.g. +14155550100")
        sender.set_defaults(handler=_admin(handler))
    sender_list = add(
        sender_commands,
        "list",
        help="list the allowed senders of a location as JSON",
        description="List the allowed senders of a location as JSON.",
    )
    sender_list.add_argument("--location", required=True, metavar="ID", help="location id")
    sender_list.set_defaults(handler=_admin(_list_senders))
    return parser


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from calnotify.app import SERVE_DISPATCH_ENV, create_app
    from calnotify.db.migrate import upgrade

    _configure_logging(settings)
    upgrade(settings.database_url)
    loops = args.concurrency or settings.dispatch_concurrency
    processes = f"{args.workers} processes" if args.workers > 1 else "1 process"
    if args.no_worker:
        mode = f"API only ({processes}); sending is left to `calnotify worker`"
    else:
        each = " each" if args.workers > 1 else ""
        mode = f"API and dispatcher ({processes}, {loops} dispatch loops{each})"
    _announce(settings, mode=mode)
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "log_level": settings.log_level,
        "proxy_headers": False,
        "timeout_graceful_shutdown": 30,
    }
    if args.workers > 1:
        # Each process builds its own app (and engine) from the environment.
        os.environ[SERVE_DISPATCH_ENV] = "0" if args.no_worker else "1"
        if args.concurrency:
            os.environ["CALNOTIFY_DISPATCH_CONCURRENCY"] = str(args.concurrency)
        uvicorn.run(
            "calnotify.app:app_from_environment", factory=True, workers=args.workers, **options
        )
        return 0
    app = create_app(settings, run_dispatcher=not args.no_worker, concurrency=args.concurrency)
    uvicorn.run(app, **options)
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from calnotify.clock import SystemClock
    from calnotify.db.migrate import upgrade
    from calnotify.dispatch.runtime import Engine

    _configure_logging(settings)
    upgrade(settings.database_url)
    loops = args.concurrency or settings.dispatch_concurrency
    _announce(settings, mode=f"dispatcher only ({loops} dispatch loops)")

    async def run() -> None:
        db = Database(
            settings.database_url,
            pool_size=settings.database_pool_size,
            busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        )
        engine = Engine(settings, db, SystemClock(), concurrency=args.concurrency)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        engine.start()
        logging.getLogger("calnotify.worker").info("worker started")
        await stop.wait()
        logging.getLogger("calnotify.worker").info("stopping: finishing messages in flight")
        await engine.stop()
        await db.dispose()

    asyncio.run(run())
    return 0


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if settings.log_level != "debug":
        # Alembic tells every start which SQL dialect it found; not news at info level.
        logging.getLogger("alembic").setLevel(logging.WARNING)


def _announce(settings: Settings, *, mode: str) -> None:
    """Log what this process runs with, then check the configured providers in the background."""
    from calnotify.ops.checks import startup_summary

    log = logging.getLogger("calnotify")
    for line in startup_summary(settings, mode=mode):
        log.info(line)
    if settings.smtp_configured or settings.twilio_configured:
        threading.Thread(
            target=_warn_on_failed_providers, args=(settings,), name="provider-checks", daemon=True
        ).start()


def _warn_on_failed_providers(settings: Settings) -> None:
    from calnotify.ops.checks import check_public_url, check_smtp, check_twilio

    async def run() -> list[Any]:
        return [
            await check_smtp(settings, timeout=10),
            await check_twilio(settings, timeout=10),
            check_public_url(settings),
        ]

    log = logging.getLogger("calnotify")
    for result in asyncio.run(run()):
        if result is None:
            continue
        if result.ok:
            log.info("check %s", result.line())
        else:
            log.warning(
                "PROVIDER CHECK FAILED: %s: %s (messages stay queued and are retried; "
                "`calnotify check` tests again)",
                result.name,
                result.detail,
            )


def _check(args: argparse.Namespace, settings: Settings) -> int:
    from calnotify.ops.checks import run_checks

    results = asyncio.run(run_checks(settings, timeout=args.timeout))
    for result in results:
        print(result.line())
    return 0 if all(result.ok for result in results) else 1


def _existing_database(settings: Settings) -> None:
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


def _db_backup(args: argparse.Namespace, settings: Settings) -> int:
    import sqlite3

    source_path = sqlite_path(settings.database_url)
    if source_path is None:
        url = shlex.quote(database_url_without_password(settings.database_url))
        raise CommandError(
            "db backup copies SQLite databases; on PostgreSQL use pg_dump, e.g. "
            f"`pg_dump --format=custom --file=calnotify.dump {url}` with the password in "
            "PGPASSWORD or ~/.pgpass"
        )
    _existing_database(settings)
    target = Path(args.path).expanduser().resolve()
    if target.exists():
        raise CommandError(f"{target} already exists: choose another path or remove it first")
    if not target.parent.is_dir():
        raise CommandError(f"cannot write {target}: the folder {target.parent} does not exist")
    source = sqlite3.connect(
        f"file:{quote(str(source_path))}?mode=ro",
        uri=True,
        timeout=settings.sqlite_busy_timeout_ms / 1000,
    )
    try:
        destination = sqlite3.connect(target)
        try:
            # In one step: in WAL mode the copy's read transaction holds up no writer, while
            # a copy in steps starts over after every write the running service makes
            # between two steps, and under steady writes might never finish.
            source.backup(destination, pages=-1)
        finally:
            destination.close()
    finally:
        source.close()
    size = target.stat().st_size
    print(f"backed up {source_path} to {target} ({size:,} bytes)", file=sys.stderr)
    return 0


def _db_upgrade(_args: argparse.Namespace, settings: Settings) -> int:
    from calnotify.db.migrate import current_head, upgrade

    upgrade(settings.database_url)
    shown = shown_database_url(settings.database_url)
    print(f"upgraded {shown}: at the latest migration, {current_head()}", file=sys.stderr)
    return 0


AdminAction = Callable[[argparse.Namespace, Any], Awaitable[Any]]


def _admin(action: AdminAction) -> Callable[[argparse.Namespace, Settings], int]:
    """Run ``action`` in one unit of work and print its JSON result.

    The database must be at the latest migration already: an admin command never migrates
    (a newer calnotify would otherwise upgrade a production database as a side effect);
    ``serve`` and ``db upgrade`` do.
    """

    def handler(args: argparse.Namespace, settings: Settings) -> int:
        from calnotify.db.migrate import require_latest

        _existing_database(settings)
        require_latest(settings.database_url)

        async def run() -> Any:
            db = Database(
                settings.database_url,
                busy_timeout_ms=settings.sqlite_busy_timeout_ms,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
            )
            try:
                async with db.session() as session:
                    return await action(args, session)
            finally:
                await db.dispose()

        print(json.dumps(asyncio.run(run()), indent=2))
        return 0

    return handler


async def _create_location(args: argparse.Namespace, session: Any) -> dict[str, Any]:
    from calnotify.locations.service import create_location, location_dict

    location = await create_location(
        session, name=args.name, email=args.email, phone=args.phone, timezone=args.timezone
    )
    return location_dict(location)


async def _create_user(args: argparse.Namespace, session: Any) -> dict[str, Any]:
    from calnotify.users.service import create_user, user_dict

    user = await create_user(
        session,
        location_id=args.location,
        email=args.email,
        first_name=args.first_name,
        last_name=args.last_name,
        phone=args.phone,
        role=args.role,
    )
    return user_dict(user)


async def _create_token(args: argparse.Namespace, session: Any) -> dict[str, Any]:
    from calnotify.auth.tokens import issue_token

    issued = await issue_token(session, args.location, args.scope)
    return {
        "id": issued.id,
        "token": issued.token,
        "locationId": issued.location_id,
        "scopes": issued.scopes,
    }


async def _revoke_token(args: argparse.Namespace, session: Any) -> dict[str, Any]:
    from calnotify.auth.tokens import revoke_token

    await revoke_token(session, args.token_id)
    return {"id": args.token_id, "revoked": True}


async def _list_locations(_args: argparse.Namespace, session: Any) -> list[dict[str, object]]:
    from sqlalchemy import select

    from calnotify.locations.service import location_dict
    from calnotify.models import Location

    rows = await session.scalars(select(Location).order_by(Location.date_added, Location.id))
    return [location_dict(location) for location in rows]


async def _list_users(args: argparse.Namespace, session: Any) -> list[dict[str, object]]:
    from calnotify.auth.tokens import Principal
    from calnotify.users.service import list_users, user_dict

    await _require_location(session, args.location)
    admin = Principal(token_id="", location_id=args.location, scopes=frozenset())
    return [user_dict(user) for user in await list_users(session, admin, args.location)]


async def _list_tokens(args: argparse.Namespace, session: Any) -> list[dict[str, object]]:
    from calnotify.auth.tokens import list_tokens

    await _require_location(session, args.location)
    return [
        {
            "id": token.id,
            "locationId": token.location_id,
            "scopes": token.scopes,
            "createdAt": _iso(token.date_added),
            "revokedAt": _iso(token.revoked_at) if token.revoked_at else None,
        }
        for token in await list_tokens(session, args.location)
    ]


def _sender_value(args: argparse.Namespace) -> tuple[str, str]:
    """(kind, normalised value) of ``--email`` / ``--number``."""
    from calnotify.channels.addresses import AddressError, normalise_email, normalise_number
    from calnotify.channels.senders import EMAIL, NUMBER

    try:
        if args.email is not None:
            return EMAIL, normalise_email(args.email)
        return NUMBER, normalise_number(args.number)
    except AddressError as exc:
        option = "--email" if args.email is not None else "--number"
        raise CommandError(f"{option}: {exc}") from None


def _sender_dict(sender: Any) -> dict[str, object]:
    return {
        "id": sender.id,
        "locationId": sender.location_id,
        "kind": sender.kind,
        "value": sender.value,
        "createdAt": _iso(sender.created_at),
    }


async def _find_sender(session: Any, location_id: str, kind: str, value: str) -> Any:
    from sqlalchemy import select

    from calnotify.models import AllowedSender

    return await session.scalar(
        select(AllowedSender).where(
            AllowedSender.location_id == location_id,
            AllowedSender.kind == kind,
            AllowedSender.value == value,
        )
    )


async def _add_sender(args: argparse.Namespace, session: Any) -> dict[str, object]:
    """Idempotent: adding an allowed sender again prints the one there is."""
    from calnotify.models import AllowedSender

    kind, value = _sender_value(args)
    await _require_location(session, args.location)
    sender = await _find_sender(session, args.location, kind, value)
    if sender is None:
        sender = AllowedSender(location_id=args.location, kind=kind, value=value)
        session.add(sender)
        await session.flush()
    return _sender_dict(sender)


async def _remove_sender(args: argparse.Namespace, session: Any) -> dict[str, object]:
    kind, value = _sender_value(args)
    await _require_location(session, args.location)
    sender = await _find_sender(session, args.location, kind, value)
    if sender is None:
        raise CommandError(
            f"{value} is not an allowed sender of location {args.location} "
            f"(`calnotify senders list --location {args.location}` shows them)"
        )
    shown = _sender_dict(sender)
    await session.delete(sender)
    return {**shown, "removed": True}


async def _list_senders(args: argparse.Namespace, session: Any) -> list[dict[str, object]]:
    from sqlalchemy import select

    from calnotify.models import AllowedSender

    await _require_location(session, args.location)
    rows = await session.scalars(
        select(AllowedSender)
        .where(AllowedSender.location_id == args.location)
        .order_by(AllowedSender.kind, AllowedSender.value)
    )
    return [_sender_dict(sender) for sender in rows]


async def _require_location(session: Any, location_id: str) -> None:
    from calnotify.models import Location

    if await session.get(Location, location_id) is None:
        raise CommandError(f"no location {location_id} (`calnotify locations list` shows them)")


def _iso(moment: Any) -> str:
    from calnotify.api.types import format_timestamp

    return format_timestamp(moment)
