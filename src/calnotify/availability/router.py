"""HighLevel's ``GET /calendars/{calendarId}/free-slots``."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query

from calnotify.api.types import JSONBytes
from calnotify.auth.deps import CalendarsRead
from calnotify.availability import service
from calnotify.availability.schemas import FreeSlotsOut, FreeSlotsQuery
from calnotify.deps import ClockDep, DatabaseDep

router = APIRouter(prefix="/calendars", tags=["Calendars"])


@router.get(
    "/{calendarId}/free-slots",
    response_model=FreeSlotsOut,
    operation_id="get-slots",
)
async def get_free_slots(
    calendarId: str,
    principal: CalendarsRead,
    db: DatabaseDep,
    clock: ClockDep,
    query: Annotated[FreeSlotsQuery, Query()],
) -> JSONBytes:
    """Free slots of the calendar between ``startDate`` and ``endDate`` (at most 31 days),
    by day, in ``timezone`` (default: the location's)."""
    asked = service.checked_range(query)
    days = await service.free_slots_by_day(db, principal, calendarId, asked, clock.now())
    return JSONBytes(json.dumps(days, separators=(",", ":")).encode())
