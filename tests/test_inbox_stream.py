"""The live inbox: server-sent events from a real ``calnotify serve`` to a real HTTP client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from calnotify.auth.tokens import PRINCIPAL_SECONDS
from tests.processes import Server, calnotify
from tests.test_processes import book, setup_location


async def next_event(lines: Any) -> dict[str, str]:
    event: dict[str, str] = {}
    async for line in lines:
        if not line:
            if "data" in event:
                return event
            event = {}
            continue
        if line.startswith(":"):
            continue  # a keep-alive comment
        key, _, value = line.partition(":")
        event[key] = value.lstrip()
    raise AssertionError("the stream ended")


async def test_new_items_reach_a_connected_client_within_a_second(server: Server) -> None:
    client, ids = await setup_location(server)
    async with contextlib.aclosing(client):
        await client.post(
            f"/calendars/{ids['calendar']}/notifications",
            json=[
                {"receiverType": "assignedUser", "channel": "inApp", "notificationType": "booked"}
            ],
        )
        stream_url = f"/users/{ids['user']}/inbox/stream"
        async with client.stream("GET", stream_url, timeout=30) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.aiter_lines()
            await asyncio.sleep(0.3)  # connected and waiting
            started = time.monotonic()
            booked = await book(client, ids, datetime.now(UTC) + timedelta(days=1))
            event = await asyncio.wait_for(next_event(lines), timeout=5)
            took = time.monotonic() - started
        assert took < 1.0, took
        assert event["event"] == "item"
        item = json.loads(event["data"])
        assert item["appointmentId"] == booked["id"]
        assert item["notificationType"] == "booked"
        assert event["id"] == item["id"]

        # Reconnecting with Last-Event-ID: only what came after.
        second = await book(client, ids, datetime.now(UTC) + timedelta(days=2))
        await asyncio.sleep(0.5)
        async with client.stream(
            "GET", stream_url, headers={"Last-Event-ID": item["id"]}, timeout=30
        ) as stream:
            event = await asyncio.wait_for(next_event(stream.aiter_lines()), timeout=5)
        assert json.loads(event["data"])["appointmentId"] == second["id"]


async def test_the_stream_keeps_locations_apart(server: Server) -> None:
    client, ids = await setup_location(server)
    other, other_ids = await setup_location(server)
    async with contextlib.aclosing(client), contextlib.aclosing(other):
        response = await other.get(f"/users/{ids['user']}/inbox/stream")
        assert response.status_code == 404
        async with httpx.AsyncClient(base_url=server.base_url) as anonymous:
            response = await anonymous.get(f"/users/{ids['user']}/inbox/stream")
        assert response.status_code == 401
        assert other_ids["user"] != ids["user"]


async def test_a_revoked_tokens_stream_ends_as_soon_as_its_calls_are_refused(
    server: Server,
) -> None:
    client, ids = await setup_location(server)
    issued = calnotify(server.database_url, "tokens", "create", "--location", ids["location"])
    holder = httpx.AsyncClient(
        base_url=server.base_url, headers={"Authorization": f"Bearer {issued['token']}"}
    )
    async with contextlib.aclosing(client), contextlib.aclosing(holder):
        url = f"/users/{ids['user']}/inbox/stream"
        async with (
            holder.stream("GET", url, timeout=30) as revoked_stream,
            client.stream("GET", url, timeout=30) as other_stream,
        ):
            assert revoked_stream.status_code == other_stream.status_code == 200

            async def read_to_the_end(lines: Any) -> None:
                async for _ in lines:
                    pass

            ending = asyncio.create_task(read_to_the_end(revoked_stream.aiter_lines()))
            other = asyncio.create_task(read_to_the_end(other_stream.aiter_lines()))
            await asyncio.sleep(2.5)  # a few checks of the token go by
            assert not ending.done()  # a valid token's stream stays open

            await asyncio.to_thread(
                calnotify, server.database_url, "tokens", "revoke", str(issued["id"])
            )
            revoked = time.monotonic()
            await asyncio.wait_for(ending, timeout=15)
            took = time.monotonic() - revoked
            assert took < PRINCIPAL_SECONDS + 0.5, took
            # Its calls are refused; the location's other token streams on.
            assert (await holder.get(f"/users/{ids['user']}/inbox")).status_code == 401
            assert not other.done()
            other.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await other
