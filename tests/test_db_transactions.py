"""Transactions and reads of compiled statements (calnotify.db.tx), on both databases:
values of every kind written and read back as given, a failure rolls back everything the
transaction wrote, long batches, several reads in one trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import psycopg
import pytest
from sqlalchemy import bindparam, insert, select, update

from calnotify.db.engine import DATABASE_ERRORS, Database
from calnotify.db.statements import Statement, table
from calnotify.models import Contact
from tests.factories import Tenant

_C = table(Contact).c
INSERT = Statement(insert(table(Contact)))
RENAME = Statement(
    update(table(Contact))
    .where(_C.id == bindparam("b_id"))
    .values(first_name=bindparam("first_name"), tags=bindparam("tags"))
)
BY_ID = Statement(
    select(_C.id, _C.first_name, _C.tags, _C.dnd, _C.date_added).where(
        _C.id.in_(bindparam("ids", expanding=True))
    )
)
OF_LOCATION = Statement(select(_C.id).where(_C.location_id == bindparam("location_id")))

AWKWARD = [
    "O'Brien",
    "100% sure; --",
    "back\\slash \\x00 and %s and %(name)s",
    "ünïcødé 🎉 $1 $$ quoted $$",
    "line\nbreak\ttab",
    "",
]


def contact(tenant: Tenant, name: str, **extra: object) -> dict[str, object]:
    return {"location_id": tenant.location_id, "first_name": name, **extra}


async def names(db: Database, ids: list[str]) -> dict[str, str]:
    [rows] = await db.fetch((BY_ID, {"ids": ids}))
    return {r.id: r.first_name for r in rows}


async def test_values_come_back_as_written(db: Database, tenant: Tenant) -> None:
    stamp = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    rows = [
        contact(tenant, name, id=f"c{i:019d}", tags=[name, {"k": name}], dnd=True, date_added=stamp)
        for i, name in enumerate(AWKWARD)
    ]
    async with db.transaction() as tx:
        tx.write_many(INSERT, rows)
        [found] = await tx.fetch((BY_ID, {"ids": [r["id"] for r in rows]}))
    assert sorted((r.first_name, r.tags, r.dnd, r.date_added) for r in found) == sorted(
        (name, [name, {"k": name}], True, stamp) for name in AWKWARD
    )
    assert await names(db, [str(r["id"]) for r in rows]) == {r["id"]: r["first_name"] for r in rows}


async def test_several_reads_each_get_their_rows(db: Database, tenant: Tenant) -> None:
    async with db.transaction() as tx:
        tx.write(INSERT, contact(tenant, "Ann", id="a" * 20))
        tx.write(INSERT, contact(tenant, "Bob", id="b" * 20))
    mine, none, both, empty = await db.fetch(
        (OF_LOCATION, {"location_id": tenant.location_id}),
        (OF_LOCATION, {"location_id": "nowhere"}),
        (BY_ID, {"ids": ["b" * 20, "a" * 20]}),
        (BY_ID, {"ids": []}),
    )
    assert len(mine) == 2
    assert none == []
    assert sorted(r.first_name for r in both) == ["Ann", "Bob"]
    assert empty == []


async def test_a_failed_write_rolls_back_the_whole_transaction(
    db: Database, tenant: Tenant
) -> None:
    async with db.transaction() as tx:
        tx.write(INSERT, contact(tenant, "Kept", id="k" * 20))

    async def conflicting() -> None:
        async with db.transaction() as tx:
            tx.write(RENAME, {"b_id": "k" * 20, "first_name": "Changed", "tags": []})
            tx.write(INSERT, contact(tenant, "New", id="n" * 20))
            tx.write(INSERT, contact(tenant, "Twice", id="k" * 20))  # the same id again

    with pytest.raises(DATABASE_ERRORS):
        await conflicting()
    assert await names(db, ["k" * 20, "n" * 20]) == {"k" * 20: "Kept"}
    # The connection went back to the pool in a usable state.
    for _ in range(3):
        async with db.transaction() as tx:
            [found] = await tx.fetch((BY_ID, {"ids": ["k" * 20]}))
            assert found[0].first_name == "Kept"


async def test_an_error_of_the_block_rolls_back(db: Database, tenant: Tenant) -> None:
    async def refused() -> None:
        async with db.transaction() as tx:
            tx.write(INSERT, contact(tenant, "Read", id="r" * 20))
            [found] = await tx.fetch((BY_ID, {"ids": ["r" * 20]}))
            assert found  # the transaction sees its own write
            tx.write(INSERT, contact(tenant, "Pending", id="p" * 20))
            raise RuntimeError("refused")

    with pytest.raises(RuntimeError):
        await refused()
    assert await names(db, ["r" * 20, "p" * 20]) == {}


async def test_a_long_batch_is_written_whole(db: Database, tenant: Tenant) -> None:
    rows = [contact(tenant, f"n{i}", id=f"m{i:019d}") for i in range(1_234)]
    async with db.transaction() as tx:
        tx.write_many(INSERT, rows)
        tx.write_many(INSERT, [])
        [found] = await tx.fetch((OF_LOCATION, {"location_id": tenant.location_id}))
    assert len(found) == len(rows)


async def test_a_transaction_of_reads_only(db: Database, tenant: Tenant) -> None:
    async with db.transaction() as tx:
        pass
    async with db.transaction() as tx:
        [found] = await tx.fetch((OF_LOCATION, {"location_id": tenant.location_id}))
    assert found == []


async def test_listeners_are_told_after_the_commit_only(db: Database, tenant: Tenant) -> None:
    if db.is_sqlite:
        pytest.skip("nobody listens on SQLite")
    conninfo = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as listener:
        await listener.execute("LISTEN calnotify_test_channel")

        async def refused() -> None:
            async with db.transaction() as tx:
                tx.write(INSERT, contact(tenant, "Gone", id="g" * 20))
                tx.notify("calnotify_test_channel")
                raise RuntimeError("refused")

        with pytest.raises(RuntimeError):
            await refused()
        async with db.transaction() as tx:
            tx.write(INSERT, contact(tenant, "Told", id="t" * 20))
            tx.notify("calnotify_test_channel")
            tx.notify("calnotify_test_channel")
        told = [n.channel async for n in listener.notifies(timeout=0.5)]
        assert told == ["calnotify_test_channel"]
        with pytest.raises(ValueError, match="channel"):
            tx.notify("x; DROP TABLE contacts")
    assert await names(db, ["g" * 20, "t" * 20]) == {"t" * 20: "Told"}


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        "{}",
        "[1, 2.5, null, true]",
        '{"a": [], "b": {}}',
        '"ünï 🎉"',
        "[ ]",
        '{"k": "\\u00e9"}',
    ],
)
def test_json_columns_read_as_json_loads_reads_them(text: str) -> None:
    from calnotify.db.engine import _json_value

    for data in (text.encode(), text):
        value = _json_value(data)
        assert value == json.loads(text)
        assert type(value) is type(json.loads(text))
    first, second = _json_value(b"[]"), _json_value(b"[]")
    assert first is not second  # each value its own, free to change
