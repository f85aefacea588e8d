"""What an operator token's console adds (docs/semantics.md §9): the deployment's health,
one line per location, worst first, and the location switcher."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from calnotify.auth.sessions import COOKIE, Operator, choose_location
from calnotify.config import Settings
from calnotify.console.web import PREFIX, ConsoleRoute, first, now_utc, read_form, render, signed_in
from calnotify.deliveries.health import deployment_health
from calnotify.deps import ReadSessionDep, SessionDep
from calnotify.ops.checks import run_checks
from calnotify.ops.results import CheckResult

router = APIRouter(route_class=ConsoleRoute)

OperatorOnly = Annotated[Operator, signed_in(operators_only=True)]


@dataclass
class ProviderChecks:
    """The last run of ``calnotify check``'s provider checks in this process: run at most
    once a minute whoever asks, so a page cannot be used to hammer the providers."""

    at: datetime | None = None
    results: list[CheckResult] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def run(self, settings: Settings, now: datetime) -> None:
        async with self.lock:
            if self.at is not None and now - self.at < CHECKS_EVERY:
                return
            self.results = await run_checks(settings, timeout=5)
            self.at = now


CHECKS_EVERY = timedelta(minutes=1)


def provider_checks(request: Request) -> ProviderChecks:
    """This app's :class:`ProviderChecks`."""
    state = request.app.state
    if not hasattr(state, "provider_checks"):
        state.provider_checks = ProviderChecks()
    checks: ProviderChecks = state.provider_checks
    return checks


@router.get("/deployment")
async def deployment(request: Request, operator: OperatorOnly, session: ReadSessionDep) -> Response:
    now = now_utc(request)
    rows = await deployment_health(session, now)
    return render(request, "deployment.html", {"rows": rows, "now": now}, operator=operator)


@router.post("/location")
async def switch_location(
    request: Request, operator: OperatorOnly, session: SessionDep
) -> Response:
    """The operator's console moves to another location (a form of the switcher)."""
    fields = await read_form(request, operator.csrf)
    chosen = first(fields, "location")
    if not await choose_location(session, request.cookies.get(COOKIE), chosen):
        return RedirectResponse(f"{PREFIX}/deployment", status_code=303)
    return RedirectResponse(f"{PREFIX}/calendars", status_code=303)
