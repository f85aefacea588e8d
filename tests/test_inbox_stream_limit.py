"""At most CALNOTIFY_SSE_STREAMS_PER_TOKEN live inbox streams per token and server process,
against a real ``calnotify serve`` and real HTTP connections."""

from __future__ import annotations

import contextlib
import time

import httpx

from tests.processes import calnotify, start_server
from tests.test_processes import setup_location

LIMIT = 3


def refused(limit: int) -> dict[str, object]:
    return {
        "statusCode": 429,
        "message": f"Too many open inbox streams for this token (limit {limit}): close one first",
        "error": "Too Many Requests",
    }


async def test_a_token_holds_at_most_the_limit_of_streams(database_url: str) -> None:
    env = {"CALNOTIFY_SSE_STREAMS_PER_TOKEN": str(LIMIT)}
    with start_server(database_url, env=env) as server:
        client, ids = await setup_location(server)
        url = f"/users/{ids['user']}/inbox/stream"
        async with contextlib.aclosing(client), contextlib.AsyncExitStack() as streams:
            # Requests that end before streaming (404: no such user) give their slot back.
            for _ in range(LIMIT + 2):
                assert (
                    await client.get("/users/AAAAAAAAAAAAAAAAAAAA/inbox/stream")
                ).status_code == 404

            opened = [
                await streams.enter_async_context(client.stream("GET", url, timeout=30))
                for _ in range(LIMIT)
            ]
            assert [s.status_code for s in opened] == [200] * LIMIT

            one_more = await client.get(url)
            assert one_more.status_code == 429
            assert one_more.json() == refused(LIMIT)
            assert int(one_more.headers["retry-after"]) > 0

            # Another token has slots of its own.
            token = calnotify(
                server.database_url, "tokens", "create", "--location", ids["location"]
            )
            async with (
                httpx.AsyncClient(
                    base_url=server.base_url,
                    headers={"Authorization": f"Bearer {token['token']}"},
                ) as other,
                other.stream("GET", url, timeout=30) as theirs,
            ):
                assert theirs.status_code == 200

            # A closed stream frees its slot (once the server has seen the connection close).
            await opened[0].aclose()
            deadline = time.monotonic() + 5
            while True:
                again = await streams.enter_async_context(client.stream("GET", url, timeout=30))
                if again.status_code == 200:
                    break
                assert again.status_code == 429
                await again.aclose()
                assert time.monotonic() < deadline, "the closed stream's slot was not freed"
            # ...and only that one.
            assert (await client.get(url)).status_code == 429
