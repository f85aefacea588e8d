"""The ``calnotify`` command: serve the API, migrate the database, manage tenants.

Admin commands print JSON on stdout and errors on stderr (exit status 1). Each group of
commands is a module of this package: ``service`` (serve, worker, check, db),
``locations``, ``access`` (users, tokens), ``senders``, ``contacts``, ``webhooks`` and
``secrets``.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from calnotify import __version__
from calnotify.cli import access, contacts, locations, secrets, senders, service, webhooks
from calnotify.cli.common import CommandError, Parser
from calnotify.config import Settings, SettingsError, get_settings
from calnotify.db.urls import DatabaseURLError, describe_database_error
from calnotify.errors import AppError

__all__ = ["CommandError", "build_parser", "main"]


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


def build_parser() -> argparse.ArgumentParser:
    debug_help = "show the full traceback of an error (also when CALNOTIFY_LOG_LEVEL=debug)"
    # Every subcommand takes --debug too (`calnotify serve --debug`); SUPPRESS leaves the
    # top level's value alone when it is not repeated there.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)

    def add(commands: Any, name: str, **options: Any) -> argparse.ArgumentParser:
        subcommand: argparse.ArgumentParser = commands.add_parser(name, parents=[common], **options)
        return subcommand

    parser = Parser(
        prog="calnotify",
        description="Self-hosted calendar notifications with HighLevel's API. "
        "Settings come from CALNOTIFY_* environment variables (see the README).",
    )
    parser.add_argument("--version", action="version", version=f"calnotify {__version__}")
    parser.add_argument("--debug", action="store_true", help=debug_help)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for group in (service, locations, access, senders, contacts, webhooks, secrets):
        group.add_commands(commands, add)
    return parser
