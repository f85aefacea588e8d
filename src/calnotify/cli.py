"""The ``calnotify`` command: serve the API, migrate the database, manage tenants.

Admin commands print JSON on stdout and errors on stderr (exit status 1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from calnotify import __version__
from calnotify.auth.scopes import ALL_SCOPES
from calnotify.config import Settings, get_settings
from calnotify.db.engine import Database, DatabaseURLError
from calnotify.errors import AppError


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        settings = get_settings()
        result: int = args.handler(args, settings)
    except DatabaseURLError as exc:
        print(f"calnotify: CALNOTIFY_DATABASE_URL: {exc}", file=sys.stderr)
        return 1
    except AppError as exc:
        print(f"calnotify: {exc.message}", file=sys.stderr)
        return 1
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="calnotify",
        description="Self-hosted calendar notifications with HighLevel's API. "
        "Settings come from CALNOTIFY_* environment variables (see the README).",
    )
    parser.add_argument("--version", action="version", version=f"calnotify {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the HTTP API (migrates the database first)",
        description="Run the HTTP API. The database is migrated to the latest schema first.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="serve the API only; leave sending to `calnotify worker` processes",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="HTTP server processes (default 1); each also dispatches unless --no-worker",
    )
    serve.add_argument(
        "--concurrency",
        type=int,
        default=None,
        metavar="N",
        help="dispatch loops in this process (default CALNOTIFY_DISPATCH_CONCURRENCY)",
    )
    serve.set_defaults(handler=_serve)

    worker = commands.add_parser(
        "worker",
        help="send due notifications (no HTTP API)",
        description="Claim and send due deliveries until stopped. Any number of workers and "
        "servers may run against one database; SIGTERM or Ctrl-C finishes the messages in "
        "flight and exits.",
    )
    worker.add_argument(
        "--concurrency",
        type=int,
        default=None,
        metavar="N",
        help="dispatch loops, each claiming its own batches (default "
        "CALNOTIFY_DISPATCH_CONCURRENCY)",
    )
    worker.set_defaults(handler=_worker)

    db = commands.add_parser("db", help="database schema", description="Database schema.")
    db_commands = db.add_subparsers(title="commands", metavar="COMMAND", required=True)
    upgrade = db_commands.add_parser(
        "upgrade",
        help="apply the migrations to the configured database",
        description="Apply the Alembic migrations to CALNOTIFY_DATABASE_URL.",
    )
    upgrade.set_defaults(handler=_db_upgrade)

    locations = commands.add_parser(
        "locations", help="manage locations", description="Manage locations (sub-accounts)."
    )
    loc_commands = locations.add_subparsers(title="commands", metavar="COMMAND", required=True)
    loc_create = loc_commands.add_parser(
        "create",
        help="create a location and print it as JSON",
        description="Create a location and print it as JSON (with its id).",
    )
    loc_create.add_argument("--name", required=True)
    loc_create.add_argument("--email", default="", help="the business email")
    loc_create.add_argument("--phone", default="", help="E.164, e.g. +14155550100")
    loc_create.add_argument("--timezone", default="UTC", help="IANA zone (default UTC)")
    loc_create.set_defaults(handler=_admin(_create_location))

    users = commands.add_parser("users", help="manage users", description="Manage users.")
    user_commands = users.add_subparsers(title="commands", metavar="COMMAND", required=True)
    user_create = user_commands.add_parser(
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

    tokens = commands.add_parser(
        "tokens", help="manage API tokens", description="Manage location access tokens."
    )
    token_commands = tokens.add_subparsers(title="commands", metavar="COMMAND", required=True)
    token_create = token_commands.add_parser(
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
    token_revoke = token_commands.add_parser(
        "revoke",
        help="revoke a token by its id",
        description="Revoke a token by its id; it stops working at once.",
    )
    token_revoke.add_argument("token_id", metavar="TOKEN_ID")
    token_revoke.set_defaults(handler=_admin(_revoke_token))
    return parser


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from calnotify.app import SERVE_DISPATCH_ENV, create_app
    from calnotify.db.migrate import upgrade

    upgrade(settings.database_url)
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


def _db_upgrade(_args: argparse.Namespace, settings: Settings) -> int:
    from calnotify.db.migrate import upgrade

    upgrade(settings.database_url)
    print("database is at the latest schema", file=sys.stderr)
    return 0


AdminAction = Callable[[argparse.Namespace, Any], Awaitable[dict[str, Any]]]


def _admin(action: AdminAction) -> Callable[[argparse.Namespace, Settings], int]:
    """Run ``action`` in one unit of work on a migrated database; print its JSON result."""

    def handler(args: argparse.Namespace, settings: Settings) -> int:
        from calnotify.db.migrate import upgrade

        upgrade(settings.database_url)

        async def run() -> dict[str, Any]:
            db = Database(settings.database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
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
