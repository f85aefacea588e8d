"""What an operator token's console adds (docs/semantics.md §9): the deployment's health,
one line per location, worst first, and the location switcher."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Request
from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import RedirectResponse, Response

from calnotify.config import Settings
from calnotify.console.queries import LATENESS_EDGES, seconds_between
from calnotify.console.sessions import COOKIE, Operator, choose_location
from calnotify.console.web import PREFIX, ConsoleRoute, first, now_utc, read_form, render, signed_in
from calnotify.deps import ReadSessionDep, SessionDep
from calnotify.models import Delivery, Location
from calnotify.ops.checks import run_checks
from calnotify.ops.results import CheckResult

router = APIRouter(route_class=ConsoleRoute)

OperatorOnly = Annotated[Operator, signed_in(operators_only=True)]


@dataclass(frozen=True, slots=True)
class LocationHealth:
    id: str
    name: str
    queued: int
    due: int
    oldest_due: datetime | None
    late_p99: str  # "< 1 s" (a bucket of the last hour's lateness), "" without sends
    failed: int

    def rank(self, now: datetime) -> tuple[float, int, int, int]:
        """Worst first: the most overdue, then the most failures, the most due, queued."""
        overdue = (now - self.oldest_due).total_seconds() if self.oldest_due else 0.0
        return (-overdue, -self.failed, -self.due, -self.queued)


async def deployment_health(session: AsyncSession, now: datetime) -> list[LocationHealth]:
    """Every location's queue now and its last hour (counted by the database), worst first."""
    dialect = session.get_bind().dialect.name
    is_due = and_(Delivery.status == "scheduled", Delivery.run_at <= now)
    queues = {
        row[0]: row[1:]
        for row in await session.execute(
            select(
                Delivery.location_id,
                func.count(),
                func.sum(case((is_due, 1), else_=0)),
                func.min(case((is_due, Delivery.run_at), else_=None)),
            )
            .where(Delivery.status == "scheduled")
            .group_by(Delivery.location_id)
        )
    }
    hour_ago = now - timedelta(hours=1)
    failed = dict(
        (
            await session.execute(
                select(Delivery.location_id, func.count())
                .where(Delivery.status == "failed", Delivery.updated_at >= hour_ago)
                .group_by(Delivery.location_id)
            )
        ).all()
    )
    late = seconds_between(Delivery.sent_at, Delivery.due_at, dialect)
    bucket = case(
        *((late < edge, i) for i, edge in enumerate(LATENESS_EDGES)), else_=len(LATENESS_EDGES)
    )
    buckets: dict[str, list[int]] = {}
    for location_id, index, count in await session.execute(
        select(Delivery.location_id, bucket, func.count())
        .where(Delivery.status == "sent", Delivery.sent_at >= hour_ago)
        .group_by(Delivery.location_id, bucket)
    ):
        buckets.setdefault(location_id, [0] * (len(LATENESS_EDGES) + 1))[int(index)] += int(count)
    found = []
    for location in await session.execute(select(Location.id, Location.name)):
        queued, due, oldest = queues.get(location.id, (0, 0, None))
        found.append(
            LocationHealth(
                id=location.id,
                name=location.name,
                queued=int(queued or 0),
                due=int(due or 0),
                oldest_due=_instant(oldest),
                late_p99=_p99(buckets.get(location.id)),
                failed=int(failed.get(location.id, 0)),
            )
        )
    return sorted(found, key=lambda h: (*h.rank(now), h.name))


def _instant(value: Any) -> datetime | None:
    if isinstance(value, str):  # SQLite gives an aggregate of a date column back as text
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value  # type: ignore[no-any-return]


def _p99(counts: list[int] | None) -> str:
    """The lateness bucket the 99th percentile of the last hour's sends falls in."""
    if not counts or not sum(counts):
        return ""
    wanted, seen = 0.99 * sum(counts), 0
    for i, count in enumerate(counts):
        seen += count
        if seen >= wanted:
            return (
                f"< {LATENESS_EDGES[i]:g} s"
                if i < len(LATENESS_EDGES)
                else (f"≥ {LATENESS_EDGES[-1]:g} s")
            )
    return ""


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
