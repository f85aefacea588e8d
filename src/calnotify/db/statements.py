"""Statements built once and compiled once per dialect, run on a raw driver connection.

Building a SQLAlchemy statement, computing its cache key and looking up its compiled form
costs more than the database takes to answer a statement of a few indexed rows. A
:class:`Statement` is built at import, with :func:`~sqlalchemy.bindparam` placeholders,
and compiled once per dialect into positional SQL (``?`` for SQLite, ``%s`` for psycopg).
Its parameters are bound by the same processors SQLAlchemy would apply (JSON as text, UTC
datetimes, booleans) and its rows converted by the same result processors, so a row holds
what an ORM entity would, as a named tuple with the columns' keys as attributes.

On PostgreSQL a statement whose SQL is the same on every run also has a prepared form
(:class:`Prepared`): a named server-side statement, so that PostgreSQL parses and plans it
once per connection instead of on every run (:class:`~calnotify.db.tx.PostgresTx`).

An ``IN`` over a list takes ``bindparam(name, expanding=True)``: the list is spread into as
many placeholders as it has values when the statement runs (an empty list matches nothing).
"""

from __future__ import annotations

import hashlib
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, cast

from sqlalchemy import (
    JSON,
    DateTime,
    Delete,
    Insert,
    Select,
    Table,
    TextClause,
    TypeDecorator,
    Update,
)
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

#: What statements are compiled for: positional parameters, as the raw drivers take them.
SQLITE: Dialect = SQLiteDialect_pysqlite(paramstyle="qmark")
POSTGRES: Dialect = PGDialect_psycopg(paramstyle="format")  # type: ignore[no-untyped-call]

Convert = Callable[[Any], Any] | None
# What an empty expanded list becomes: a subquery with no row, so `x IN ()` is false and
# `x NOT IN ()` true, on both dialects.
_EMPTY = "SELECT NULL WHERE 1 = 0"


@dataclass(frozen=True, slots=True)
class _Part:
    """A piece of the compiled SQL, then the parameter after it (None: the last piece)."""

    text: str
    name: str | None
    convert: Convert
    expanding: bool


@dataclass(frozen=True, slots=True)
class Prepared:
    """A statement as PostgreSQL's ``PREPARE`` takes it, and how to run it by name."""

    name: str
    prepare: str  # PREPARE name AS <the SQL with $1, $2…>
    execute: str  # EXECUTE name(%s, %s…), for the client-side binding of its values


@dataclass(frozen=True, slots=True)
class Compiled:
    sql: str  # the whole SQL, when no parameter expands
    parts: tuple[_Part, ...]
    params: tuple[tuple[str, Convert], ...]  # each parameter and its converter, in order
    expands: bool
    fixed: Mapping[str, Any]  # the values of the statement's own literals
    # An insert's columns that may be left out, and how their value is made then.
    defaults: Mapping[str, Callable[[], Any]]
    results: tuple[Convert, ...]
    placeholder: str
    prepared: Prepared | None  # PostgreSQL's named form, when the SQL never changes


def _marker(dialect: Dialect) -> str:
    return "?" if dialect.paramstyle == "qmark" else "%s"


def _compile(statement: ClauseElement, dialect: Dialect) -> Compiled:
    compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
    sql = str(compiled)
    placeholder = _marker(dialect)
    converters = {
        name: _quicker(bind.type, bind.type.dialect_impl(dialect).bind_processor(dialect), dialect)
        for name, bind in compiled.binds.items()
    }
    expanding = {name for name, bind in compiled.binds.items() if bind.expanding}
    names = list(compiled.positiontup or [])
    parts: list[_Part] = []
    rest = sql
    for name in names:
        token = f"__[POSTCOMPILE_{name}]" if name in expanding else placeholder
        before, found, rest = rest.partition(token)
        if not found:
            raise ValueError(f"cannot place parameter {name!r} in {sql!r}")
        parts.append(_Part(before, name, converters.get(name), name in expanding))
    parts.append(_Part(rest, None, None, False))
    results = tuple(_result_processor(c, dialect) for c in _columns(statement))
    defaults = _insert_defaults(statement)
    return Compiled(
        sql=sql,
        parts=tuple(parts),
        params=tuple((p.name, p.convert) for p in parts if p.name is not None),
        expands=bool(expanding),
        # A column's own default is made per run, not a literal (its placeholder has None).
        fixed={
            name: b.value
            for name, b in compiled.binds.items()
            if not b.required and name not in defaults
        },
        defaults=defaults,
        results=results,
        placeholder=placeholder,
        prepared=None if expanding or placeholder != "%s" else _prepared(parts),
    )


def _prepared(parts: list[_Part]) -> Prepared:
    """The named form of a statement of ``parts`` (psycopg's ``%s`` placeholders, ``%%``
    for a percent sign). The name is the SQL's digest: the same in every process."""
    body = parts[0].text.replace("%%", "%") + "".join(
        f"${n}{part.text.replace('%%', '%')}" for n, part in enumerate(parts[1:], 1)
    )
    name = "cn_" + hashlib.blake2b(body.encode(), digest_size=10).hexdigest()
    count = len(parts) - 1
    arguments = f"({', '.join(['%s'] * count)})" if count else ""
    return Prepared(name, f"PREPARE {name} AS {body}", f"EXECUTE {name}{arguments}")


def _columns(statement: ClauseElement) -> list[Any]:
    """What a row of the statement holds: a select's columns, a DML statement's RETURNING."""
    if isinstance(statement, Select):
        return list(statement.selected_columns)
    return list(getattr(statement, "exported_columns", ()))


def _insert_defaults(statement: ClauseElement) -> dict[str, Callable[[], Any]]:
    """For an insert: each column's Python-side default (a value, or a function called for
    each row), or NULL, used when a row leaves the column out. For an update: each column's
    ``onupdate``, which SQLAlchemy adds to the ``SET`` of a statement that does not set the
    column itself."""
    made: dict[str, Callable[[], Any]] = {}
    if isinstance(statement, Insert):
        for column in statement.table.c:
            made[column.key] = _made_by(column.default) or _none
    elif isinstance(statement, Update):
        for changed in statement.table.c:
            if (onupdate := _made_by(getattr(changed, "onupdate", None))) is not None:
                made[changed.key] = onupdate
    return made


def _made_by(default: Any) -> Callable[[], Any] | None:
    """How a column's Python-side default makes its value (None: it has none)."""
    if default is None or not (default.is_scalar or default.is_callable):
        return None
    arg: Any = default.arg
    return partial(_same, arg) if default.is_scalar else partial(arg, None)


def _none() -> None:
    return None


def _same(value: Any) -> Any:
    return value


def _result_processor(column: Any, dialect: Dialect) -> Convert:
    """How SQLAlchemy converts the column's driver values; None where the driver gives the
    value as it is meant already (psycopg's numbers, asked without a type code)."""
    if _utc_datetime(column.type) and dialect.name == "sqlite":
        return _sqlite_utc_value
    try:
        processor: Convert = column.type.dialect_impl(dialect).result_processor(dialect, None)
    except (TypeError, LookupError):
        return None
    return processor


def _utc_datetime(kind: Any) -> bool:
    return isinstance(kind, TypeDecorator) and isinstance(kind.impl, DateTime)


def _sqlite_utc_text(value: datetime) -> str:
    """An aware datetime as SQLite stores it (naive UTC, always six fractional digits):
    what SQLAlchemy's UTC type and SQLite's DATETIME write, in one C call or two."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    if value.utcoffset():
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _sqlite_utc_value(text: str) -> datetime:
    """SQLite's stored text of a UTC column, as an aware datetime (what SQLAlchemy's SQLite
    DATETIME and the UTC type read, by the C parser)."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _quicker(kind: Any, processor: Convert, dialect: Dialect) -> Convert:
    """``processor``, giving the same values for less: a JSON column's commonest value (an
    empty list) written as ``json.dumps`` writes it without calling it; on SQLite a UTC
    datetime formatted by its C method; a datetime bound twice in a row (``date_added`` and
    ``date_updated`` of a new row) converted once."""
    if processor is None:
        return None
    bound = processor
    if isinstance(kind, JSON):
        return lambda value: "[]" if value == [] else bound(value)
    if _utc_datetime(kind) and dialect.name == "sqlite":
        bound = _sqlite_utc_text
    if _utc_datetime(kind):
        last: list[Any] = [None, None]

        def converted(value: Any) -> Any:
            if value is not last[0]:
                last[:] = value, bound(value)
            return last[1]

        return converted
    return processor


def _value(compiled: Compiled, name: str, given: Mapping[str, Any]) -> Any:
    if name in given:
        return given[name]
    if name in compiled.fixed:
        return compiled.fixed[name]
    default = compiled.defaults.get(name)
    if default is None:
        raise KeyError(f"no value for the parameter {name!r}")
    return default()


def _flat(compiled: Compiled, given: Mapping[str, Any]) -> list[Any]:
    out: list[Any] = []
    fixed = compiled.fixed
    for name, convert in compiled.params:
        if name in given:
            value = given[name]
        elif name in fixed:
            value = fixed[name]
        else:
            value = _value(compiled, name, given)
        out.append(value if convert is None or value is None else convert(value))
    return out


def _expanded(compiled: Compiled, given: Mapping[str, Any]) -> tuple[str, list[Any]]:
    sql: list[str] = []
    out: list[Any] = []
    for part in compiled.parts:
        sql.append(part.text)
        if part.name is None:
            break
        value = _value(compiled, part.name, given)
        convert = part.convert
        if not part.expanding:
            sql.append(compiled.placeholder)
            out.append(value if convert is None or value is None else convert(value))
            continue
        values = list(value)
        if not values:
            sql.append(_EMPTY)
            continue
        sql.append(", ".join([compiled.placeholder] * len(values)))
        out.extend(v if convert is None or v is None else convert(v) for v in values)
    return "".join(sql), out


class Statement:
    """A select, insert, update or delete compiled once per dialect (see the module).

    ``convert=False``: result values stay as the driver gives them (on SQLite, JSON as
    text, booleans as 0/1, datetimes as text), for a caller that writes them out itself
    (:mod:`calnotify.notifications.wire`).
    """

    def __init__(
        self,
        statement: Select[*tuple[Any, ...]] | Insert | Update | Delete | TextClause,
        *,
        convert: bool = True,
    ) -> None:
        self.statement = statement
        self.convert = convert
        names = [str(c.key) for c in _columns(statement)]
        self.row: Callable[..., Any] = namedtuple("Row", names, rename=True)._make  # type: ignore[attr-defined]
        self._by_dialect: dict[str, Compiled] = {}

    def compiled(self, dialect: Dialect) -> Compiled:
        found = self._by_dialect.get(dialect.name)
        if found is None:
            found = self._by_dialect[dialect.name] = _compile(self.statement, dialect)
        return found

    def bind(self, dialect: Dialect, given: Mapping[str, Any]) -> tuple[str, list[Any]]:
        """The SQL and its positional parameters for ``given``."""
        compiled = self.compiled(dialect)
        if compiled.expands:
            return _expanded(compiled, given)
        return compiled.sql, _flat(compiled, given)

    def bind_many(
        self, dialect: Dialect, rows: Sequence[Mapping[str, Any]]
    ) -> tuple[str, list[list[Any]]]:
        """The SQL and, for each row, its positional parameters (no list may expand)."""
        compiled = self.compiled(dialect)
        if compiled.expands:
            raise ValueError("a statement run once per row cannot expand a list")
        return compiled.sql, [_flat(compiled, row) for row in rows]

    def rows(self, dialect: Dialect, raw: Sequence[Sequence[Any]]) -> list[Any]:
        """Driver rows as this statement's rows, each value converted as SQLAlchemy would."""
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


def table(model: type) -> Table:
    """A mapped class's table, typed as one (``Model.__table__`` is typed as any clause)."""
    return cast(Table, model.__table__)  # type: ignore[attr-defined]


def by_id(values: Mapping[str, Any]) -> dict[str, Any]:
    """A row's values for an ``UPDATE ... WHERE id = :b_id`` setting every column (a bound
    parameter may not share a column's name in an update's ``WHERE``)."""
    given = dict(values)
    given["b_id"] = given.pop("id")
    return given


#: One statement with its parameters, as the transactions and reads take them.
Bound = tuple[Statement, Mapping[str, Any]]
