"""A booking locks its calendar only from the first statement that needs it; what it read
before then is read again under the lock, and a calendar changed meanwhile makes it start
over (PostgreSQL; on SQLite the one writer's transaction is the lock)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from calnotify.appointments import booking
from calnotify.db.engine import Database
from tests.conftest import NOW
from tests.factories import Tenant

START = NOW + timedelta(days=2)


async def test_a_calendar_changed_before_the_lock_makes_the_booking_start_over(
    client: httpx.AsyncClient, tenant: Tenant, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = booking.read_context
    locks: list[bool] = []

    async def edited_meanwhile(*args: Any, lock: bool = True) -> Any:
        """The first read as it was before someone changed the calendar's slot length."""
        context = await real(*args, lock=lock)
        locks.append(lock)
        if not lock:
            old = context.calendars[tenant.calendar_id]
            context.calendars[tenant.calendar_id] = old._replace(slot_duration=15)
        return context

    monkeypatch.setattr(booking, "read_context", edited_meanwhile)
    contact = await tenant.add_contact()
    response = await client.post(
        "/calendars/events/appointments",
        json={
            "calendarId": tenant.calendar_id,
            "locationId": tenant.location_id,
            "contactId": contact,
            "startTime": START.isoformat(),
        },
        headers=tenant.headers(),
    )
    assert response.status_code == 200, response.text
    booked = response.json()
    length = datetime.fromisoformat(booked["endTime"]) - datetime.fromisoformat(booked["startTime"])
    if db.is_sqlite:
        assert locks == [False]  # nothing can change between SQLite's statements
        assert length == timedelta(minutes=15)
    else:
        assert locks == [False, True]  # started over, locked from the first read
        assert length == timedelta(minutes=30)  # the calendar as it is
