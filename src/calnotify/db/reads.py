"""Selects built and compiled once, for the reads every API request makes.

Building a select, computing its cache key and looking up its compiled form costs more
than SQLite takes to answer it. A :class:`Query` is built at import, with
:func:`~sqlalchemy.bindparam` placeholders, and compiled once per dialect; run with
:meth:`calnotify.db.engine.Database.fetch`, its rows are converted by the same type
processors SQLAlchemy would apply (JSON, booleans, UTC datetimes), so a row holds what an
ORM entity would.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select
from sqlalchemy.engine import Dialect


@dataclass(frozen=True, slots=True)
class Compiled:
    sql: str
    compiled: Any
    positions: Sequence[str]
    binds: Mapping[str, Callable[[Any], Any]]
    results: Sequence[Callable[[Any], Any] | None]


class Query:
    """A select compiled once per dialect; its rows have its columns as attributes."""

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        names = [str(c.key) for c in statement.selected_columns]
        self.row: Callable[..., Any] = namedtuple("Row", names)._make  # type: ignore[attr-defined]
        self._by_dialect: dict[str, Compiled] = {}

    def compiled(self, dialect: Dialect) -> Compiled:
        found = self._by_dialect.get(dialect.name)
        if found is None:
            compiled = self.statement.compile(dialect=dialect)
            binds = {}
            for name, bind in compiled.binds.items():
                processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
                if processor is not None:
                    binds[name] = processor
            results = [
                column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in self.statement.selected_columns
            ]
            found = Compiled(
                sql=str(compiled),
                compiled=compiled,
                positions=list(compiled.positiontup or []),
                binds=binds,
                results=results,
            )
            self._by_dialect[dialect.name] = found
        return found

    def parameters(self, dialect: Dialect, given: Mapping[str, Any]) -> tuple[str, list[Any]]:
        """The SQL and the positional parameters (qmark dialects) for ``given``."""
        compiled = self.compiled(dialect)
        values = compiled.compiled.construct_params(dict(given))
        out = []
        for name in compiled.positions:
            value = values[name]
            processor = compiled.binds.get(name)
            out.append(value if processor is None or value is None else processor(value))
        return compiled.sql, out

    def rows(self, dialect: Dialect, raw: Sequence[Sequence[Any]]) -> list[Any]:
        """Driver rows as this query's rows, each value converted as SQLAlchemy would."""
        processors = self.compiled(dialect).results
        make = self.row
        if not any(processors):
            return [make(r) for r in raw]
        return [
            make(
                [v if p is None or v is None else p(v) for p, v in zip(processors, r, strict=True)]
            )
            for r in raw
        ]
