"""Run Alembic migrations programmatically (``calnotify db upgrade``, ``calnotify serve``)
and tell whether a database is at the schema this calnotify needs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from calnotify import __version__
from calnotify.db.urls import connect_args, shown_database_url, sync_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class SchemaVersionError(Exception):
    """The database is not at the migration this calnotify needs; the text says what to do."""


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    url = sync_url(database_url).render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate the database to ``revision``; :class:`SchemaVersionError` when it was
    migrated by a newer calnotify (at a revision these migrations do not know)."""
    try:
        command.upgrade(alembic_config(database_url), revision)
    except CommandError as exc:
        if "Can't locate revision" not in str(exc):
            raise
        heads = current_revisions(database_url)
        if all(_known(script_directory(), head) for head in heads):
            raise  # the unknown revision is the one asked for, not the database's
        raise SchemaVersionError(_problem_of(database_url, heads) or str(exc)) from exc


def require_latest(database_url: str) -> None:
    """:class:`SchemaVersionError` unless the database is at the latest migration.

    For commands that must not migrate behind the operator's back (only ``serve`` and
    ``db upgrade`` do). On SQLite, the caller checks first that the file exists.
    """
    if problem := _problem_of(database_url, current_revisions(database_url)):
        raise SchemaVersionError(problem)


def current_revisions(database_url: str) -> tuple[str, ...]:
    """The migrations the database is at; empty when it was never migrated."""
    url = sync_url(database_url)
    engine = create_engine(url, poolclass=NullPool, connect_args=connect_args(url))
    try:
        with engine.connect() as connection:
            return tuple(MigrationContext.configure(connection).get_current_heads())
    finally:
        engine.dispose()


def revision_problem(shown: str, heads: Sequence[str]) -> str | None:
    """Why the database ``shown`` (as the message should name it), at migrations
    ``heads``, cannot be used by this calnotify and what to do; None at the latest."""
    script = script_directory()
    latest = script.get_current_head()
    if not heads:
        return f"{shown} has no calnotify schema (never migrated): run `calnotify db upgrade`"
    if tuple(heads) == (latest,):
        return None
    current = "+".join(sorted(heads))
    if all(_known(script, revision) for revision in heads):
        return (
            f"{shown} is at migration {current}, this calnotify needs {latest}: "
            "run `calnotify db upgrade`"
        )
    return (
        f"{shown} is at migration {current}, which calnotify {__version__} does not know "
        f"(its latest is {latest}): run the calnotify version that migrated it, or a newer one"
    )


def _problem_of(database_url: str, heads: Sequence[str]) -> str | None:
    return revision_problem(f"the database at {shown_database_url(database_url)}", heads)


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except CommandError:  # alembic's answer for an unknown revision
        return False


def script_directory() -> ScriptDirectory:
    """calnotify's migrations, as Alembic sees them."""
    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def current_head() -> str | None:
    return script_directory().get_current_head()
