"""A caller that is refused (bad, missing or revoked token; forged Twilio callback) is refused
at once, even while another transaction holds SQLite's write lock: the token is resolved and
the signature checked before a write request's unit of work opens.

On PostgreSQL there is no process-wide write lock: the same tests pass without waiting."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from calnotify.app import create_app
from calnotify.auth.tokens import hash_token, revoke_token
from calnotify.clock import ManualClock
from calnotify.config import Settings
from calnotify.db.engine import Database
from calnotify.db.urls import sqlite_path
from calnotify.models import ApiToken
from tests.factories import Tenant

PROMPT = 2.0  # seconds: far below the 10 s a lock wait would take, with room for a busy machine
WRITE_METHODS = ("post", "put", "patch", "delete")


@asynccontextmanager
async def app_write_lock(db: Database) -> AsyncIterator[None]:
    """This process's write lock held by another unit of work (as a long write would)."""
    holding, release = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        async with db.session():  # write=True: the asyncio lock, then BEGIN IMMEDIATE
            holding.set()
            await release.wait()

    task = asyncio.create_task(writer())
    await asyncio.wait_for(holding.wait(), timeout=5)
    try:
        yield
    finally:
        release.set()
        await task


@asynccontextmanager
async def file_write_lock(database_url: str) -> AsyncIterator[None]:
    """The SQLite file's write lock held by another connection (another process's writer)."""
    path = sqlite_path(database_url)
    assert path is not None
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()


async def prompt(call: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    """The response and how long it took; fails (instead of hanging) if it waits for a lock."""
    started = time.monotonic()
    response = await asyncio.wait_for(call, timeout=5)
    return response, time.monotonic() - started


async def revoked_token(tenant: Tenant) -> str:
    token = await tenant.token_with("calendars/events.write")
    async with tenant.db.session() as session:
        token_id = await session.scalar(
            select(ApiToken.id).where(ApiToken.token_hash == hash_token(token))
        )
        assert token_id is not None
        await revoke_token(session, token_id)
    return token


def write_routes(app: Any) -> list[tuple[str, str]]:
    """Every (method, path) that writes and needs a token, path parameters filled in."""
    routes = []
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            if method in WRITE_METHODS and operation.get("security"):
                filled = path
                for parameter in operation.get("parameters", []):
                    if parameter["in"] == "path":
                        filled = filled.replace(
                            "{" + parameter["name"] + "}", "AAAAAAAAAAAAAAAAAAAA"
                        )
                routes.append((method.upper(), filled))
    assert len(routes) > 10, routes
    return routes


async def test_every_write_route_refuses_a_bad_token_while_the_write_lock_is_held(
    settings: Settings, db: Database, clock: ManualClock, tenant: Tenant
) -> None:
    app = create_app(settings, database=db, clock=clock)
    revoked = await revoked_token(tenant)
    read_only = await tenant.token_with("calendars.readonly")
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://calnotify.test") as client,
        app_write_lock(db),
    ):
        for method, path in write_routes(app):
            for authorization in (None, "Bearer nope", f"Bearer {revoked}"):
                headers = {"Version": "2021-04-15"}
                if authorization:
                    headers["Authorization"] = authorization
                request = client.request(method, path, headers=headers, json={})
                response, took = await prompt(request)
                assert response.status_code == 401, (method, path, response.text)
                assert response.json()["message"] == "Invalid token: access token is invalid"
                assert took < PROMPT, (method, path, took)
            # A valid token without the scope the route needs: refused before the lock too.
            request = client.request(method, path, headers=tenant.headers(read_only), json={})
            response, took = await prompt(request)
            assert response.status_code == 401, (method, path, response.text)
            assert response.json()["message"] == "The token is not authorized for this scope."
            assert took < PROMPT, (method, path, took)


@pytest.mark.parametrize("held", ["in this process", "by another connection"])
async def test_bad_tokens_and_forged_callbacks_do_not_wait_for_writers(
    settings: Settings, db: Database, clock: ManualClock, tenant: Tenant, held: str
) -> None:
    if held == "by another connection" and not db.is_sqlite:
        pytest.skip("PostgreSQL has no database-wide write lock to hold")
    twilio = settings.model_copy(
        update={"twilio_account_sid": "AC123", "twilio_auth_token": SecretStr("secret")}
    )
    app = create_app(twilio, database=db, clock=clock)
    revoked = await revoked_token(tenant)
    lock = (
        app_write_lock(db) if held == "in this process" else file_write_lock(settings.database_url)
    )
    url = f"/calendars/{tenant.calendar_id}/notifications"
    rule = [{"receiverType": "contact", "channel": "email", "notificationType": "booked"}]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://calnotify.test") as client:
        async with lock:
            for token in ("nope", revoked, None):
                headers = tenant.headers(token) if token else {"Version": "2021-04-15"}
                response, took = await prompt(client.post(url, json=rule, headers=headers))
                assert response.status_code == 401
                assert response.json() == {
                    "statusCode": 401,
                    "message": "Invalid token: access token is invalid",
                    "error": "Unauthorized",
                }
                assert took < PROMPT, took
            form = {"MessageSid": "SM1", "MessageStatus": "failed"}
            webhooks = ("/webhooks/twilio/status", "/webhooks/twilio/inbound")
            for signature in ({"X-Twilio-Signature": "forged"}, {}):
                for webhook in webhooks:
                    callback = client.post(webhook, data=form, headers=signature)
                    response, took = await prompt(callback)
                    assert response.status_code == 403
                    assert response.json()["message"] == "Invalid Twilio signature"
                    assert took < PROMPT, took

            # The lock is real: a good token's write waits for it (SQLite), then goes through.
            good = asyncio.create_task(client.post(url, json=rule, headers=tenant.headers()))
            await asyncio.sleep(0.3)
            assert good.done() is not db.is_sqlite
        response = await asyncio.wait_for(good, timeout=15)
        assert response.status_code == 200, response.text
