"""The reference for the API benchmark: a minimal Starlette app doing one single-row insert
(POST /rows) or select (GET /rows/{id}) per request, on the same database, through the same
engine setup as calnotify (SQLAlchemy async; WAL and BEGIN IMMEDIATE on SQLite).

    uvicorn --factory bench.reference_app:app   (CALNOTIFY_DATABASE_URL names the database)
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from calnotify.db.engine import Database


def app() -> Starlette:
    db = Database(os.environ["CALNOTIFY_DATABASE_URL"])

    async def insert_row(request: Request) -> JSONResponse:
        body = await request.json()
        row_id = secrets.token_hex(10)
        async with db.session() as session:
            await session.execute(
                text("INSERT INTO bench_rows (id, payload) VALUES (:id, :payload)"),
                {"id": row_id, "payload": str(body)[:200]},
            )
        return JSONResponse({"id": row_id})

    async def select_row(request: Request) -> JSONResponse:
        async with db.session(write=False) as session:
            row = (
                await session.execute(
                    text("SELECT id, payload FROM bench_rows WHERE id = :id"),
                    {"id": request.path_params["row_id"]},
                )
            ).first()
        if row is None:
            return JSONResponse({"message": "not found"}, status_code=404)
        return JSONResponse({"id": row.id, "payload": row.payload})

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await db.dispose()

    return Starlette(
        routes=[
            Route("/rows", insert_row, methods=["POST"]),
            Route("/rows/{row_id}", select_row, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
