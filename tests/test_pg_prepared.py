"""PostgreSQL runs the busy statements by name (calnotify.db.tx.PostgresTx): each is
prepared once per connection, in the trip that first runs it; a failed or abandoned
transaction leaves the connection able to prepare again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import String, bindparam, column, insert, literal, select, text

from calnotify.db.statements import POSTGRES, Statement, table
from calnotify.db.tx import PostgresTx
from calnotify.models import Location

_L = table(Location).c
ADD = Statement(insert(table(Location)))
NAMED = Statement(select(_L.name).where(_L.id == bindparam("id")))
# A literal percent sign beside a parameter: the prepared form must keep it as one.
LIKE = Statement(
    select(_L.id).where(_L.name.like(literal("100%") + bindparam("rest", type_=String)))
)
PREPARED = Statement(
    text("SELECT name FROM pg_prepared_statements ORDER BY name").columns(column("name", String))
)


@pytest.fixture
async def connection(pg_database: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    dsn = pg_database.replace("postgresql+psycopg://", "postgresql://")
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        yield conn


def location(id_: str, name: str) -> dict[str, Any]:
    return {"id": id_, "name": name, "email": "", "phone": "", "timezone": "UTC"}


async def prepared_names(connection: psycopg.AsyncConnection[Any]) -> list[str]:
    [rows] = await PostgresTx(connection, POSTGRES, begin=False).fetch((PREPARED, {}))
    return [r.name for r in rows]


def name_of(statement: Statement) -> str:
    form = statement.compiled(POSTGRES).prepared
    assert form is not None
    return form.name


async def test_a_statement_is_prepared_once_per_connection(
    connection: psycopg.AsyncConnection[Any],
) -> None:
    tx = PostgresTx(connection, POSTGRES)
    tx.write(ADD, location("p0000000000000000001", "100% sure"))
    tx.write(ADD, location("p0000000000000000002", "O'Brien"))
    await tx.commit()
    for _ in range(3):
        reader = PostgresTx(connection, POSTGRES, begin=False)
        [[row]] = await reader.fetch((NAMED, {"id": "p0000000000000000002"}))
        assert row.name == "O'Brien"
        [[hit]] = await reader.fetch((LIKE, {"rest": " sure"}))
        assert hit.id == "p0000000000000000001"
    names = await prepared_names(connection)
    assert {name_of(ADD), name_of(NAMED), name_of(LIKE)} <= set(names)
    assert len(names) == len(set(names)) == 4  # and the listing's own


async def test_a_failed_trip_leaves_the_connection_preparing_again(
    connection: psycopg.AsyncConnection[Any],
) -> None:
    tx = PostgresTx(connection, POSTGRES)
    tx.write(ADD, location("p0000000000000000003", "First"))
    await tx.commit()
    # The same key again: the trip that prepares the read fails on the insert after it.
    failing = PostgresTx(connection, POSTGRES)
    failing.write(ADD, location("p0000000000000000003", "Again"))
    with pytest.raises(psycopg.errors.UniqueViolation):
        await failing.fetch((NAMED, {"id": "p0000000000000000003"}))
    await failing.abandon()
    reader = PostgresTx(connection, POSTGRES, begin=False)
    [[row]] = await reader.fetch((NAMED, {"id": "p0000000000000000003"}))
    assert row.name == "First"


async def test_writes_never_sent_are_prepared_again(
    connection: psycopg.AsyncConnection[Any],
) -> None:
    abandoned = PostgresTx(connection, POSTGRES)
    abandoned.write(ADD, location("p0000000000000000004", "Never"))
    await abandoned.abandon()  # the block failed before anything was sent
    tx = PostgresTx(connection, POSTGRES)
    tx.write(ADD, location("p0000000000000000005", "Kept"))
    await tx.commit()
    [[row]] = await PostgresTx(connection, POSTGRES, begin=False).fetch(
        (NAMED, {"id": "p0000000000000000005"})
    )
    assert row.name == "Kept"


async def test_without_prepare_nothing_is_prepared(
    connection: psycopg.AsyncConnection[Any],
) -> None:
    reader = PostgresTx(connection, POSTGRES, begin=False, prepare=False)
    await reader.fetch((NAMED, {"id": "p0000000000000000006"}))
    [rows] = await PostgresTx(connection, POSTGRES, begin=False, prepare=False).fetch(
        (PREPARED, {})
    )
    assert rows == []


def test_statements_whose_sql_changes_are_not_prepared() -> None:
    expanding = Statement(select(_L.id).where(_L.id.in_(bindparam("ids", expanding=True))))
    assert expanding.compiled(POSTGRES).prepared is None
    assert NAMED.compiled(POSTGRES).prepared is not None
