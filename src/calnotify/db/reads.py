"""Statements built and compiled once, for the reads (and the simplest writes) of the
requests made most.

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

from sqlalchemy import JSON, DateTime, Insert, Select, TypeDecorator, Update
from sqlalchemy.engine import Dialect


@dataclass(frozen=True, slots=True)
class Compiled:
    sql: str
    compiled: Any
    #: For each ``?`` of ``sql``: the parameter's name and how its value is bound.
    positions: Sequence[tuple[str, Callable[[Any], Any] | None]]
    #: The values of the statement's own parameters (a literal written into it).
    fixed: Mapping[str, Any]
    results: Sequence[Callable[[Any], Any] | None]


def _compile(
    statement: Select[*tuple[Any, ...]] | Insert | Update,
    dialect: Dialect,
    *,
    results: Sequence[Callable[[Any], Any] | None],
) -> Compiled:
    compiled = statement.compile(dialect=dialect)
    processors = {
        name: _quicker(bind.type, bind.type.dialect_impl(dialect).bind_processor(dialect))
        for name, bind in compiled.binds.items()
    }
    return Compiled(
        sql=str(compiled),
        compiled=compiled,
        positions=[(name, processors[name]) for name in compiled.positiontup or []],
        fixed={name: b.value for name, b in compiled.binds.items() if not b.required},
        results=results,
    )


def _quicker(kind: Any, processor: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
    """``processor``, giving the same values for less: a JSON column's commonest value (an
    empty list) written as ``json.dumps`` writes it without calling it; a datetime bound
    twice in a row (``date_added`` and ``date_updated`` of a new row) converted once."""
    if processor is None:
        return None
    bound = processor
    if isinstance(kind, JSON):
        return lambda value: "[]" if value == [] else bound(value)
    if isinstance(kind, TypeDecorator) and isinstance(kind.impl, DateTime):
        last: list[Any] = [None, None]

        def converted(value: Any) -> Any:
            if value is not last[0]:
                last[:] = value, bound(value)
            return last[1]

        return converted
    return processor


def _positional(compiled: Compiled, given: Mapping[str, Any]) -> list[Any]:
    fixed = compiled.fixed
    out = []
    for name, processor in compiled.positions:
        value = given[name] if name in given else fixed[name]
        out.append(value if processor is None or value is None else processor(value))
    return out


class Query:
    """A select compiled once per dialect; its rows have its columns as attributes.

    ``convert=False``: the values stay as the driver gives them (on SQLite, JSON as text,
    booleans as 0/1, datetimes as text), for a caller that writes them out itself
    (:mod:`calnotify.notifications.wire`).
    """

    def __init__(self, statement: Select[*tuple[Any, ...]], *, convert: bool = True) -> None:
        self.statement = statement
        self.convert = convert
        names = [str(c.key) for c in statement.selected_columns]
        self.row: Callable[..., Any] = namedtuple("Row", names)._make  # type: ignore[attr-defined]
        self._by_dialect: dict[str, Compiled] = {}

    def compiled(self, dialect: Dialect) -> Compiled:
        found = self._by_dialect.get(dialect.name)
        if found is None:
            results = [
                column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in self.statement.selected_columns
            ]
            found = _compile(self.statement, dialect, results=results)
            self._by_dialect[dialect.name] = found
        return found

    def parameters(self, dialect: Dialect, given: Mapping[str, Any]) -> tuple[str, list[Any]]:
        """The SQL and the positional parameters (qmark dialects) for ``given``."""
        compiled = self.compiled(dialect)
        return compiled.sql, _positional(compiled, given)

    def rows(self, dialect: Dialect, raw: Sequence[Sequence[Any]]) -> list[Any]:
        """Driver rows as this query's rows, each value converted as SQLAlchemy would."""
        processors = self.compiled(dialect).results
        make = self.row
        if not self.convert or not any(processors):
            return [make(r) for r in raw]
        return [
            make(
                [v if p is None or v is None else p(v) for p, v in zip(processors, r, strict=True)]
            )
            for r in raw
        ]


class Change:
    """An insert or update compiled once per dialect, run by
    :meth:`calnotify.db.engine.Writer.write` with one mapping of values per row (bound
    as SQLAlchemy would bind them: JSON as text, UTC datetimes, booleans)."""

    def __init__(self, statement: Insert | Update) -> None:
        self.statement = statement
        self._by_dialect: dict[str, Compiled] = {}

    def compiled(self, dialect: Dialect) -> Compiled:
        found = self._by_dialect.get(dialect.name)
        if found is None:
            found = _compile(self.statement, dialect, results=[])
            self._by_dialect[dialect.name] = found
        return found

    def parameters(
        self, dialect: Dialect, rows: Sequence[Mapping[str, Any]]
    ) -> tuple[str, list[Any]]:
        """The SQL and, for each row, its positional parameters (qmark dialects)."""
        compiled = self.compiled(dialect)
        return compiled.sql, [_positional(compiled, row) for row in rows]
