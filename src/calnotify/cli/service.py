"""``calnotify serve``, ``worker``, ``check`` and ``db``: running the service and looking
after its database."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import threading
from typing import Any

from calnotify.cli import backups, retention
from calnotify.cli.common import (
    AddCommand,
    CommandError,
    at_least_one,
    port,
    seconds,
)
from calnotify.config import Settings
from calnotify.db.engine import Database
from calnotify.db.urls import shown_database_url


def add_commands(commands: Any, add: AddCommand) -> None:
    """``serve``, ``worker``, ``db`` and ``check``."""
    _add_processes(commands, add)
    _add_database(commands, add)


def _add_processes(commands: Any, add: AddCommand) -> None:
    serve = add(
        commands,
        "serve",
        help="run the HTTP API (migrates the database first)",
        description="Run the HTTP API. The database is migrated to the latest schema first.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=port, default=8000, help="TCP port (default 8000)")
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="serve the API only; leave sending to `calnotify worker` processes",
    )
    serve.add_argument(
        "--workers",
        type=at_least_one,
        default=1,
        metavar="N",
        help="HTTP server processes (default 1); each also dispatches unless --no-worker",
    )
    serve.add_argument(
        "--concurrency",
        type=at_least_one,
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
        type=at_least_one,
        default=None,
        metavar="N",
        help="dispatch loops, each claiming its own batches (default "
        "CALNOTIFY_DISPATCH_CONCURRENCY)",
    )
    worker.add_argument(
        "--metrics-port",
        type=port,
        default=None,
        metavar="PORT",
        help="serve GET /metrics (Prometheus) and GET /healthz on this port (default "
        "CALNOTIFY_WORKER_METRICS_PORT; unset: not served)",
    )
    worker.add_argument(
        "--metrics-host",
        default=None,
        metavar="HOST",
        help="interface for --metrics-port (default CALNOTIFY_WORKER_METRICS_HOST, 127.0.0.1)",
    )
    worker.set_defaults(handler=_worker)


def _add_database(commands: Any, add: AddCommand) -> None:
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
        "copy, taken while calnotify keeps running, which records the instant it was taken "
        "(`calnotify db restore` needs it). On PostgreSQL, use pg_dump.",
    )
    backup.add_argument("path", metavar="PATH", help="the file to write (must not exist)")
    backup.set_defaults(handler=backups.db_backup)
    restore = add(
        db_commands,
        "restore",
        help="restore a SQLite backup; what may have been sent since is not sent again",
        description="Copy BACKUP (made by `calnotify db backup`) into the configured SQLite "
        "database, with SQLite's backup API. Refused while a calnotify serve or worker uses the "
        "database: stop them first. Then every delivery still scheduled whose time to be sent "
        "lies between the backup's instant and now, and every one that was being sent when "
        "the backup was taken, is skipped (reason restored): it may have been sent after the "
        "backup was taken. Prints how many were skipped and how many are still to come. On "
        "PostgreSQL, use pg_restore and then `calnotify db mark-restored`.",
    )
    restore.add_argument("backup", metavar="BACKUP", help="the backup file to restore")
    restore.add_argument(
        "--resend-missed",
        action="store_true",
        help="leave the deliveries due since the backup scheduled: they are sent again",
    )
    restore.set_defaults(handler=backups.db_restore)
    mark = add(
        db_commands,
        "mark-restored",
        help="after restoring a backup by other means, skip what may have been sent since",
        description="Skip (reason restored) every delivery still scheduled whose time to be "
        "sent lies between INSTANT and now, and every one marked as being sent: what a database "
        "restored from a backup taken at INSTANT would send again. For any database, after "
        "pg_restore or a copy put in place by hand; refused while a calnotify serve or worker "
        "uses the database. Prints how many were skipped and how many are still to come.",
    )
    mark.add_argument(
        "--since",
        required=True,
        type=backups.instant,
        metavar="INSTANT",
        help="when the backup was taken, ISO 8601 with its zone (2030-01-01T02:00:00Z)",
    )
    mark.set_defaults(handler=backups.db_mark_restored)
    retention.add_commands(db_commands, add)

    check = add(
        commands,
        "check",
        help="check the database and the configured providers",
        description="Check, in this order, that the database is reachable and at the latest "
        "migration, that the SMTP server and Twilio accept the configured credentials "
        "(nothing is sent; a provider that is not configured is not checked), that "
        "CALNOTIFY_PUBLIC_URL is set when Twilio reports delivery, and which locations have "
        "a legacy or fixed-offset time zone (a warning). One line per check: ok, warn or "
        "FAIL; exit status 1 when any fails, so it can serve as a health check.",
    )
    check.add_argument(
        "--timeout", type=seconds, default=10, metavar="S", help="seconds per check (default 10)"
    )
    check.set_defaults(handler=_check)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from calnotify.app import SERVE_DISPATCH_ENV, create_app
    from calnotify.db.migrate import upgrade

    _configure_logging(settings)
    upgrade(settings.database_url)
    if not settings.public_url.strip() and "CALNOTIFY_LOCAL_URL" not in os.environ:
        # Links point to this machine at the port it listens on (each process of
        # --workers reads it from the environment).
        local = f"http://localhost:{args.port}"
        os.environ["CALNOTIFY_LOCAL_URL"] = local
        settings = settings.model_copy(update={"local_url": local})
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
    app = create_app(
        settings,
        run_dispatcher=not args.no_worker,
        concurrency=args.concurrency,
        presence="serve",
    )
    uvicorn.run(app, **options)
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from calnotify.api.metrics_server import listen, metrics_url
    from calnotify.db.migrate import upgrade

    _configure_logging(settings)
    metrics_port = args.metrics_port or settings.worker_metrics_port
    metrics_host = (args.metrics_host or settings.worker_metrics_host).strip()
    metrics_socket = None
    if metrics_port:
        try:
            metrics_socket = listen(metrics_host, metrics_port)
        except OSError as exc:
            raise CommandError(
                f"cannot serve metrics on {metrics_host}:{metrics_port}: "
                f"{exc.strerror or exc} (choose another --metrics-port or --metrics-host)"
            ) from None
    upgrade(settings.database_url)
    loops = args.concurrency or settings.dispatch_concurrency
    metrics = "off (--metrics-port or CALNOTIFY_WORKER_METRICS_PORT not set)"
    if metrics_socket is not None and metrics_port:
        metrics = metrics_url(metrics_host, metrics_port)
        if settings.metrics_token.get_secret_value():
            metrics += " (needs Authorization: Bearer <CALNOTIFY_METRICS_TOKEN>)"
    _announce(settings, mode=f"dispatcher only ({loops} dispatch loops)", metrics=metrics)
    asyncio.run(_run_worker(settings, args.concurrency, metrics_socket))
    return 0


async def _run_worker(
    settings: Settings, concurrency: int | None, metrics_socket: socket.socket | None
) -> None:
    """Send until SIGTERM or SIGINT; with ``metrics_socket``, serve the metrics on it."""
    from calnotify.api.metrics_server import MetricsServer, metrics_app
    from calnotify.clock import SystemClock
    from calnotify.dispatch.metrics import DispatchMetrics
    from calnotify.dispatch.runtime import Engine
    from calnotify.ops.presence import Presence
    from calnotify.ops.pruner import Pruner

    db = Database(
        settings.database_url,
        pool_size=settings.database_pool_size,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        prepare=settings.database_prepare,
    )
    clock = SystemClock()
    metrics = DispatchMetrics()
    engine = Engine(settings, db, clock, concurrency=concurrency, metrics=metrics)
    presence = Presence(db, clock, "worker")  # what db restore sees of this worker
    await presence.start()
    server = None
    if metrics_socket is not None:
        server = MetricsServer(metrics_app(settings, db, clock, metrics), metrics_socket)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    engine.start()
    pruner = Pruner.of(settings, db, clock)  # docs/semantics.md §10
    pruner.start()
    if server is not None:
        server.start()
    log = logging.getLogger("calnotify.worker")
    log.info("worker started")
    await stop.wait()
    log.info("stopping: finishing messages in flight")
    await pruner.stop()
    await engine.stop()
    if server is not None:
        await server.stop()  # after the last sends, so a final scrape still counts them
    await presence.stop()
    await db.dispose()


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if settings.log_level != "debug":
        # Alembic tells every start which SQL dialect it found; not news at info level.
        logging.getLogger("alembic").setLevel(logging.WARNING)


def _announce(settings: Settings, *, mode: str, metrics: str | None = None) -> None:
    """Log what this process runs with, then check the configured providers in the background."""
    from calnotify.ops.summary import startup_summary

    log = logging.getLogger("calnotify")
    for line in startup_summary(settings, mode=mode, metrics=metrics):
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
    from calnotify.ops.zone_checks import check_time_zones

    async def run() -> list[Any]:
        results = await run_checks(settings, timeout=args.timeout)
        if results[0].ok:  # the database: reachable and migrated
            results += await check_time_zones(settings, timeout=args.timeout)
        return results

    results = asyncio.run(run())
    for result in results:
        print(result.line())
    return 0 if all(result.ok for result in results) else 1


def _db_upgrade(_args: argparse.Namespace, settings: Settings) -> int:
    from calnotify.db.migrate import current_head, upgrade

    upgrade(settings.database_url)
    shown = shown_database_url(settings.database_url)
    print(f"upgraded {shown}: at the latest migration, {current_head()}", file=sys.stderr)
    return 0
