"""ASGI middleware: request body size limit, trailing-slash tolerance, NUL in URLs, load
shedding."""

from __future__ import annotations

import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from calnotify.db.gate import WriteGate
from calnotify.dispatch.pressure import SendPressure
from calnotify.errors import envelope

log = logging.getLogger("calnotify.api")


class TrailingSlash:
    """Serve ``/calendars/`` and ``/calendars`` alike, without a redirect.

    HighLevel's SDKs call the collection routes with a trailing slash and do not follow
    redirects, so the path is normalised before routing.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if "\x00" in path or b"%00" in scope.get("query_string", b""):
                # No id, filter or name of ours contains NUL, and PostgreSQL refuses it.
                await _answer(send, 400, "NUL characters are not allowed in the URL")
                return
            if len(path) > 1 and path.endswith("/"):
                scope = dict(scope)
                scope["path"] = path.rstrip("/") or "/"
                raw = scope.get("raw_path")
                if isinstance(raw, bytes):
                    scope["raw_path"] = raw.rstrip(b"/") or b"/"
        await self.app(scope, receive, send)


class BodyLimit:
    """Answer 413 to a body larger than ``max_bytes`` before anything parses it.

    The body is read here (it is small by definition) and replayed to the application.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._reject(send)
                return

        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._reject(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, replay(b"".join(chunks), receive), send)

    async def _reject(self, send: Send) -> None:
        await _answer(send, 413, f"Request body is larger than {self.max_bytes} bytes")


def replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` as if ``body`` (read from it already) had not been read yet."""
    delivered = False

    async def replayed() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


class Shedding:
    """Answer a write request 503 at once, before its body is read, while the database's
    writer has more queued than it can do (SQLite: see :mod:`calnotify.db.gate`) or, in a
    process that dispatches, while its sends fall behind for want of the event loop
    (:mod:`calnotify.dispatch.pressure`), or while they fall behind at all and
    ``max_in_flight`` write requests are already being answered; the dispatcher keeps its
    place and the requests that were admitted keep their pace. The cap bounds how many
    coroutines take turns with the dispatcher's on the event loop, whatever the number of
    connections a burst opens; while the sends are on time, it does not apply.

    The console's forms and the providers' webhooks are not shed: they are few, and a
    provider's status report refused is lost.
    """

    KEPT = ("/console", "/webhooks")

    def __init__(
        self,
        app: ASGIApp,
        gate: WriteGate,
        pressure: SendPressure | None,
        max_in_flight: int = 1_000_000,
    ) -> None:
        self.app = app
        self.gate = gate
        self.pressure = pressure
        self.max_in_flight = max_in_flight
        #: Write requests being answered now.
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] in ("GET", "HEAD", "OPTIONS")
            or str(scope["path"]).startswith(self.KEPT)
        ):
            await self.app(scope, receive, send)
            return
        pressure = self.pressure
        crowded = (
            self.in_flight >= self.max_in_flight
            and pressure is not None
            and pressure.behind >= pressure.behind_after  # the sends are behind
        )
        if crowded or self.gate.overloaded() or (pressure and pressure.overloaded()):
            self.gate.refused += 1
            await _answer(send, 503, BUSY, [(b"retry-after", b"1")])
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


BUSY = "The service is busy: try again in a moment"


async def _answer(
    send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(envelope(status, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class CatchAll:
    """Answer an unexpected error with a 500 in the envelope, and keep the connection.

    Starlette's own last-resort handler answers and then re-raises, which makes the server
    drop the keep-alive connection under a pooled client (HighLevel's SDKs included).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            await _answer(send, 500, "Internal server error")
