"""The few statements that differ by dialect."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert


def insert_ignoring_conflicts(table: Table | Any, dialect: str, *keys: str) -> Insert:
    """``INSERT … ON CONFLICT (keys) DO NOTHING`` for SQLite and PostgreSQL."""
    module: Any = postgresql if dialect == "postgresql" else sqlite
    statement: Any = module.insert(table)
    result: Insert = statement.on_conflict_do_nothing(index_elements=list(keys))
    return result
