"""Alembic environment: one schema for SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any, Literal

import sqlalchemy as sa
from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import create_engine, make_url, pool

import calnotify.models  # noqa: F401  (registers every table on Base.metadata)
from calnotify.db.base import Base, UTCDateTime
from calnotify.db.urls import connect_args

config = context.config
target_metadata = Base.metadata


def render_item(kind: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render calnotify's column types as plain SQLAlchemy types in new migrations."""
    if kind == "type":
        if isinstance(obj, UTCDateTime):
            return "sa.DateTime(timezone=True)"
        if isinstance(obj, sa.JSON):
            autogen_context.imports.add("from sqlalchemy.dialects import postgresql")
            return 'sa.JSON().with_variant(postgresql.JSONB(), "postgresql")'
        if isinstance(obj, sa.BigInteger) and getattr(obj, "_variant_mapping", None):
            return 'sa.BigInteger().with_variant(sa.Integer(), "sqlite")'
    return False


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    # A bounded connect: `db upgrade` (or `serve`) against an unreachable host fails in
    # seconds instead of waiting for the operating system to give up.
    engine = create_engine(url, poolclass=pool.NullPool, connect_args=connect_args(make_url(url)))
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            # Takes effect on a new database (before its first table): pruning then gives
            # freed pages back to the file system (docs/semantics.md §10). An existing one
            # needs `calnotify db vacuum` once; there this only records the wish.
            connection.exec_driver_sql("PRAGMA auto_vacuum=INCREMENTAL")
            connection.commit()  # ends the transaction begun for it: each migration has its own
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            render_item=render_item,
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
