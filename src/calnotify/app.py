"""The ASGI application: routers, error handlers, middleware."""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from calnotify import __version__
from calnotify.actions.keys import LinkKeys
from calnotify.actions.limits import RateLimit
from calnotify.actions.router import router as actions_router
from calnotify.api import errors
from calnotify.api.home import DOCS_ASSETS_URL
from calnotify.api.home import router as home_router
from calnotify.api.middleware import BodyLimit, CatchAll, Shedding, TrailingSlash
from calnotify.api.ops import router as ops_router
from calnotify.appointments.router import router as appointments_router
from calnotify.auth.deps import API_VERSIONS, VERSION_DESCRIPTION, TokenWith
from calnotify.auth.tokens import PRINCIPAL_SECONDS, Principal, ShortLived
from calnotify.availability.router import router as availability_router
from calnotify.calendars.router import router as calendars_router
from calnotify.clock import Clock, SystemClock
from calnotify.compose.pool import ComposePool
from calnotify.config import Settings, get_settings
from calnotify.console.router import router as console_router
from calnotify.console.web import PREFIX as CONSOLE_PREFIX
from calnotify.console.web import STATIC_DIR as CONSOLE_STATIC
from calnotify.contacts.router import router as contacts_router
from calnotify.db.engine import Database
from calnotify.db.gate import WriteGate
from calnotify.deliveries.router import router as deliveries_router
from calnotify.deps import Planning
from calnotify.dispatch.metrics import DispatchMetrics
from calnotify.dispatch.pressure import SendPressure
from calnotify.dispatch.runtime import Engine
from calnotify.dispatch.wakeup import Wakeup
from calnotify.hooks.router import router as hooks_router
from calnotify.inbox.hub import InboxHub
from calnotify.inbox.router import router as inbox_router
from calnotify.locations.router import router as locations_router
from calnotify.notifications.router import router as notifications_router
from calnotify.ops.presence import Presence
from calnotify.ops.pruner import Pruner
from calnotify.replies.router import router as replies_router
from calnotify.templates.router import router as templates_router
from calnotify.users.router import router as users_router
from calnotify.webhooks.router import router as webhooks_router

DESCRIPTION = """\
Self-hosted calendar notifications, wire-compatible with HighLevel's Calendars API.

Every HighLevel-shaped route needs `Authorization: Bearer <location token>` and a
`Version` header (`2021-04-15`, `2021-07-28`, `2023-02-21` or `v3`). Request bodies are JSON,
sent with `Content-Type: application/json`. Errors use HighLevel's envelope
`{"statusCode", "message", "error"}`; validation errors (400) add `errors: [{field, message}]`.
"""


def create_app(
    settings: Settings | None = None,
    database: Database | None = None,
    clock: Clock | None = None,
    *,
    run_dispatcher: bool = False,
    concurrency: int | None = None,
    presence: str | None = None,
) -> FastAPI:
    """The API. With ``run_dispatcher`` the process also sends (``calnotify serve``).
    ``presence``: the kind of process it is (``serve``), kept in the ``processes`` table
    while it runs (:mod:`calnotify.ops.presence`)."""
    settings = settings or get_settings()
    owns_database = database is None
    db = database or Database(
        settings.database_url,
        pool_size=settings.database_pool_size,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        gate=WriteGate(shed_after=settings.shed_after_ms / 1000),
        prepare=settings.database_prepare,
    )

    clock = clock or SystemClock()
    metrics = DispatchMetrics()
    hub = InboxHub()
    wakeup = Wakeup()
    # Only a process that sends sheds requests for its sends.
    pressure = SendPressure(db, clock) if run_dispatcher else None
    # Messages are composed in render processes (a request never renders on the event
    # loop), shared by plan previews and this process's dispatcher.
    pool = ComposePool(settings.render_budget_seconds, processes=settings.render_processes or None)
    # The link secrets, shared by the appointment page and this process's dispatcher.
    link_keys = LinkKeys(timedelta(days=settings.link_secret_grace_days))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        pool.warm()  # the first message or preview does not wait for the render processes
        await link_keys.get(db, clock.now())  # the link secret is made on first start
        beacon = Presence(db, clock, presence) if presence else None
        if beacon is not None:
            await beacon.start()
        engine = pruner = None
        if run_dispatcher:
            engine = Engine(
                settings,
                db,
                clock,
                concurrency=concurrency,
                metrics=metrics,
                inbox_listener=hub.publish,
                pool=pool,
                wakeup=wakeup,
                links=link_keys,
            )
            engine.start()
            assert pressure is not None
            pressure.waiting = engine.dispatcher.executor.oldest_waiting
            pressure.slow = engine.dispatcher.fairness.slow_now
            pressure.start()
            pruner = Pruner.of(settings, db, clock)  # docs/semantics.md §10
            pruner.start()
        # What exists at start lives as long as the process: keep the collector from
        # walking it again and again (a full collection over it pauses every request).
        gc.freeze()
        try:
            yield
        finally:
            if pruner is not None:
                await pruner.stop()
            if pressure is not None:
                await pressure.stop()
            if engine is not None:
                await engine.stop()  # drains the batches in flight
            if beacon is not None:
                await beacon.stop()
            await pool.close()
            if owns_database:
                await db.dispose()

    app = _fastapi(lifespan)
    app.state.db = db
    app.state.clock = clock
    app.state.metrics = metrics
    app.state.inbox_hub = hub
    app.state.settings = settings
    app.state.compose_pool = pool
    app.state.planning = Planning(timedelta(days=settings.planning_horizon_days), wakeup)
    app.state.principals = ShortLived[Principal](PRINCIPAL_SECONDS)
    app.state.link_keys = link_keys
    app.state.link_limit = RateLimit(settings.link_requests_per_minute)
    _route(app, settings, db, pressure)
    return app


def _route(app: FastAPI, settings: Settings, db: Database, pressure: SendPressure | None) -> None:
    """The routes, error handlers and middleware of the API."""
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router)
    app.mount(f"{CONSOLE_PREFIX}/static", StaticFiles(directory=CONSOLE_STATIC), name="console")
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.add_middleware(CatchAll)
    app.add_middleware(
        Shedding, gate=db.gate, pressure=pressure, max_in_flight=settings.max_writes_in_flight
    )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(TrailingSlash)


def _fastapi(lifespan: Any) -> FastAPI:
    """The application object: /docs (Swagger UI) and /redoc with their scripts served from
    fastapi-offline's packaged copies, so the docs work on a machine without internet."""
    return FastAPIOffline(
        title="calnotify",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        redirect_slashes=False,
        static_url=DOCS_ASSETS_URL,
        swagger_ui_parameters={"validatorUrl": None},  # no badge from swagger.io
        # FastAPI's OpenTelemetry hooks look for a configured provider on every request;
        # calnotify configures none (its measures are /metrics).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )


#: In the order requests are matched against them: a request is compared with every route
#: before its own, so the busiest come first; /calendars/events… before
#: /calendars/{calendarId}, which would match "events".
ROUTERS: tuple[APIRouter, ...] = (
    notifications_router,
    appointments_router,
    calendars_router,
    availability_router,
    contacts_router,
    users_router,
    locations_router,
    deliveries_router,
    inbox_router,
    templates_router,
    hooks_router,
    webhooks_router,
    replies_router,
    ops_router,
    home_router,
    console_router,
    actions_router,
)

_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_AUTH_ERRORS = {
    "400": "Bad Request",
    "401": "Unauthorized",
    "403": "Forbidden",
    "404": "Not Found",
    "413": "Payload Too Large",
}


SERVE_DISPATCH_ENV = "CALNOTIFY_SERVE_DISPATCH"


def app_from_environment() -> FastAPI:
    """The app of one ``calnotify serve --workers N`` process."""
    return create_app(
        run_dispatcher=os.environ.get(SERVE_DISPATCH_ENV, "1") == "1", presence="serve"
    )


def _versioned_operations() -> set[str]:
    """The operation ids of the routes whose token check reads the ``Version`` header."""

    def reads_version(dependant: Dependant) -> bool:
        return any(
            (isinstance(d.call, TokenWith) and d.call.versioned) or reads_version(d)
            for d in dependant.dependencies
        )

    found = set()
    for router in ROUTERS:
        for route in router.routes:
            if isinstance(route, APIRoute) and reads_version(route.dependant):
                if route.operation_id is None:
                    raise RuntimeError(f"{route.path}: a versioned route needs an operation_id")
                found.add(route.operation_id)
    return found


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with the ``Version`` header where the token check reads it."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    versioned = _versioned_operations()
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if operation.get("operationId") in versioned:
                operation.setdefault("parameters", []).append(
                    {
                        "name": "Version",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string", "enum": list(API_VERSIONS)},
                        "description": VERSION_DESCRIPTION,
                    }
                )
            # Validation errors are answered with 400 in HighLevel's envelope, never 422.
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None:
                responses["400"] = {
                    "description": "Bad Request",
                    "content": _ERROR_CONTENT,
                }
            if operation.get("security"):
                for status, text in _AUTH_ERRORS.items():
                    responses.setdefault(status, {"description": text, "content": _ERROR_CONTENT})
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components["Error"] = {
        "type": "object",
        "required": ["statusCode", "message", "error"],
        "properties": {
            "statusCode": {"type": "integer", "example": 400},
            "message": {"type": "string"},
            "error": {"type": "string", "example": "Bad Request"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                },
            },
        },
    }
    app.openapi_schema = schema
    return schema
