"""The reference for the API benchmark: the least a Python service can do per request.

A minimal Starlette app doing the row work of each calnotify operation on the same
database: insert one row (create), select ten rows (list), select one row (get), update one
row (update); a booking is an appointment row and its two deliveries (a booked email and a
reminder) inserted in one commit, a reschedule that appointment and its two deliveries
updated in one commit. SQLite through one long-lived aiosqlite connection
(WAL, ``synchronous=NORMAL``, as calnotify sets it); PostgreSQL through a small pool of
psycopg connections per process (autocommit).

    uvicorn --factory bench.reference_app:app   (CALNOTIFY_DATABASE_URL names the database)

The tables ``bench_rows`` and ``bench_deliveries`` are created by bench/api.py.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from calnotify.db.urls import async_url, sqlite_path

POOL_SIZE = 8

Query = Callable[[str, tuple[Any, ...]], Awaitable[list[tuple[Any, ...]]]]
#: Statements run in one transaction: each with its parameters.
Transaction = Callable[[list[tuple[str, tuple[Any, ...]]]], Awaitable[None]]


def _row(row: tuple[Any, ...]) -> dict[str, Any]:
    created = row[3]
    return {
        "id": row[0],
        "calendarId": row[1],
        "payload": row[2],
        "createdAt": created if isinstance(created, str) else created.isoformat(),
    }


def app() -> Starlette:
    raw = os.environ["CALNOTIFY_DATABASE_URL"]
    is_sqlite = async_url(raw).get_backend_name() == "sqlite"
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if is_sqlite:
            import aiosqlite

            conn = await aiosqlite.connect(str(sqlite_path(raw)), isolation_level=None)
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=NORMAL")
            await conn.execute("PRAGMA busy_timeout=10000")

            async def query(sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
                async with conn.execute(sql.replace("%s", "?"), params) as cursor:
                    return list(await cursor.fetchall())

            # One connection: a transaction holds it from BEGIN to COMMIT.
            lock = asyncio.Lock()

            async def transaction(statements: list[tuple[str, tuple[Any, ...]]]) -> None:
                async with lock:
                    await conn.execute("BEGIN")
                    try:
                        for sql, params in statements:
                            await conn.execute(sql.replace("%s", "?"), params)
                    except BaseException:
                        await conn.execute("ROLLBACK")
                        raise
                    await conn.execute("COMMIT")

            state["query"], state["transaction"] = query, transaction
            try:
                yield
            finally:
                await conn.close()
            return

        import psycopg

        dsn = raw.replace("postgresql+psycopg://", "postgresql://")
        pool: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()
        for _ in range(POOL_SIZE):
            pool.put_nowait(await psycopg.AsyncConnection.connect(dsn, autocommit=True))

        async def pg_query(sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
            conn = await pool.get()
            try:
                cursor = await conn.execute(sql, params)
                return list(await cursor.fetchall()) if cursor.description else []
            finally:
                pool.put_nowait(conn)

        async def pg_transaction(statements: list[tuple[str, tuple[Any, ...]]]) -> None:
            conn = await pool.get()
            try:
                async with conn.transaction():
                    for sql, params in statements:
                        await conn.execute(sql, params)
            finally:
                pool.put_nowait(conn)

        state["query"], state["transaction"] = pg_query, pg_transaction
        try:
            yield
        finally:
            while not pool.empty():
                await pool.get_nowait().close()

    async def insert_row(request: Request) -> JSONResponse:
        body = await request.json()
        row = (
            secrets.token_hex(10),
            request.path_params["calendar_id"],
            str(body)[:200],
            datetime.now(UTC).isoformat(),
        )
        await state["query"](
            "INSERT INTO bench_rows (id, calendar_id, payload, created_at) VALUES (%s, %s, %s, %s)",
            row,
        )
        return JSONResponse([_row(row)])

    async def list_rows(request: Request) -> JSONResponse:
        rows = await state["query"](
            "SELECT id, calendar_id, payload, created_at FROM bench_rows WHERE calendar_id = %s"
            " ORDER BY created_at, id LIMIT %s",
            (request.path_params["calendar_id"], int(request.query_params.get("limit", 10))),
        )
        return JSONResponse([_row(r) for r in rows])

    async def get_row(request: Request) -> JSONResponse:
        rows = await state["query"](
            "SELECT id, calendar_id, payload, created_at FROM bench_rows"
            " WHERE id = %s AND calendar_id = %s",
            (request.path_params["row_id"], request.path_params["calendar_id"]),
        )
        if not rows:
            return JSONResponse({"message": "not found"}, status_code=404)
        return JSONResponse(_row(rows[0]))

    async def update_row(request: Request) -> JSONResponse:
        body = await request.json()
        await state["query"](
            "UPDATE bench_rows SET payload = %s WHERE id = %s AND calendar_id = %s",
            (str(body)[:200], request.path_params["row_id"], request.path_params["calendar_id"]),
        )
        return JSONResponse({"message": "updated"})

    async def book(request: Request) -> JSONResponse:
        body = await request.json()
        now = datetime.now(UTC).isoformat()
        appointment = secrets.token_hex(10)
        start = str(body.get("startTime", now))
        await state["transaction"](
            [
                (
                    "INSERT INTO bench_rows (id, calendar_id, payload, created_at)"
                    " VALUES (%s, %s, %s, %s)",
                    (appointment, request.path_params["calendar_id"], str(body)[:200], now),
                ),
                *(
                    (
                        "INSERT INTO bench_deliveries (id, appointment_id, kind, due_at, status)"
                        " VALUES (%s, %s, %s, %s, %s)",
                        (secrets.token_hex(10), appointment, kind, due, "scheduled"),
                    )
                    for kind, due in (("booked", now), ("reminder", start))
                ),
            ]
        )
        return JSONResponse({"id": appointment, "startTime": start})

    async def reschedule(request: Request) -> JSONResponse:
        body = await request.json()
        appointment = request.path_params["row_id"]
        start = str(body.get("startTime", ""))
        await state["transaction"](
            [
                (
                    "UPDATE bench_rows SET payload = %s WHERE id = %s AND calendar_id = %s",
                    (str(body)[:200], appointment, request.path_params["calendar_id"]),
                ),
                (
                    "UPDATE bench_deliveries SET due_at = %s WHERE appointment_id = %s",
                    (start, appointment),
                ),
            ]
        )
        return JSONResponse({"id": appointment, "startTime": start})

    return Starlette(
        routes=[
            Route("/book/{calendar_id}", book, methods=["POST"]),
            Route("/book/{calendar_id}/{row_id}", reschedule, methods=["PUT"]),
            Route("/rows/{calendar_id}", insert_row, methods=["POST"]),
            Route("/rows/{calendar_id}", list_rows, methods=["GET"]),
            Route("/rows/{calendar_id}/{row_id}", get_row, methods=["GET"]),
            Route("/rows/{calendar_id}/{row_id}", update_row, methods=["PUT"]),
        ],
        lifespan=lifespan,
    )
