"""``/metrics`` and ``/healthz`` of a ``calnotify worker``, served on the worker's own event
loop (``--metrics-port`` or ``CALNOTIFY_WORKER_METRICS_PORT``).

The routes are the API's own (:mod:`calnotify.api.ops`), so a worker answers a scrape
exactly as ``calnotify serve`` does: the queue read from the database, the sends of this
process, and the same ``CALNOTIFY_METRICS_TOKEN`` rule. Nothing else is served.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator

import uvicorn
from fastapi import FastAPI

from calnotify.api import errors
from calnotify.api.ops import router as ops_router
from calnotify.clock import Clock
from calnotify.config import Settings
from calnotify.db.engine import Database
from calnotify.dispatch.metrics import DispatchMetrics


def metrics_app(
    settings: Settings, db: Database, clock: Clock, metrics: DispatchMetrics
) -> FastAPI:
    """The application of a worker's metrics address: ``/metrics`` and ``/healthz``."""
    app = FastAPI(
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.db = db
    app.state.clock = clock
    app.state.metrics = metrics
    errors.install(app)
    app.include_router(ops_router)
    return app


def metrics_url(host: str, port: int) -> str:
    """Where the metrics are scraped: ``http://host:port/metrics`` (IPv6 in brackets)."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/metrics"


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, bound at once: a port already taken (or a host
    that is not this machine's) is an ``OSError`` before the worker starts sending."""
    infos = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE | socket.AI_NUMERICSERV
    )
    family = infos[0][0]
    return socket.create_server((host, port), family=family)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The worker handles SIGTERM and SIGINT itself: it stops claiming, finishes the
        # messages in flight, then stops this server.
        yield


class MetricsServer:
    """A small uvicorn server for :func:`metrics_app` on the running event loop."""

    def __init__(self, app: FastAPI, sock: socket.socket) -> None:
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,  # the worker's logging stays as it is
            log_level="warning",
            access_log=False,
            proxy_headers=False,
            timeout_graceful_shutdown=2,
        )
        self._server = _Server(config)
        self._sock = sock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Serve on the socket (already listening: no scrape is refused in the meantime)."""
        self._task = asyncio.create_task(
            self._server.serve(sockets=[self._sock]), name="metrics-server"
        )

    async def stop(self) -> None:
        """Stop serving: scrapes under way are answered first (for at most 2 s)."""
        if self._task is None:
            return
        self._server.should_exit = True
        await self._task
        self._task = None
        self._sock.close()
