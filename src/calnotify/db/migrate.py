"""Run Alembic migrations programmatically (``calnotify db upgrade``, ``calnotify serve``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from calnotify.db.engine import sync_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    url = sync_url(database_url).render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def script_directory() -> ScriptDirectory:
    """calnotify's migrations, as Alembic sees them."""
    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def current_head() -> str | None:
    return script_directory().get_current_head()
