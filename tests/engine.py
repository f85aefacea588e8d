"""Driving the engine in tests: book through the API, move the clock, dispatch, look."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from calnotify.channels.base import (
    ChannelAdapter,
    Message,
    PermanentSendError,
    Receipt,
    RetryableSendError,
)
from calnotify.channels.registry import build_channels
from calnotify.clock import ManualClock
from calnotify.config import Settings
from calnotify.db.engine import Database
from calnotify.dispatch.dispatcher import Dispatcher, DispatchSettings
from tests.factories import Tenant


class ScriptedProvider(ChannelAdapter):
    """A provider double: answers each send with the next scripted result (default: ok)."""

    provider = "scripted"

    def __init__(self) -> None:
        self.script: list[str] = []  # "ok", "retry", "permanent"
        self.sent: list[Message] = []

    async def send(self, message: Message) -> Receipt:
        outcome = self.script.pop(0) if self.script else "ok"
        if outcome == "retry":
            raise RetryableSendError("421 try again later")
        if outcome == "permanent":
            raise PermanentSendError("550 no such mailbox")
        self.sent.append(message)
        return Receipt(self.provider, f"msg-{len(self.sent)}")


@dataclass
class Scenario:
    client: httpx.AsyncClient
    tenant: Tenant
    clock: ManualClock
    db: Database
    settings: Settings
    provider: ScriptedProvider | None = None
    dispatcher: Dispatcher = field(init=False)

    def __post_init__(self) -> None:
        channels = build_channels(self.settings, self.db, self.clock)
        if self.provider is not None:
            channels["email"] = self.provider
        self.dispatcher = Dispatcher(
            self.db,
            self.clock,
            channels,
            DispatchSettings(lease=timedelta(seconds=60), backoff_base=10, max_attempts=3),
        )

    @property
    def headers(self) -> dict[str, str]:
        return self.tenant.headers()

    async def rules(self, *items: dict[str, Any]) -> list[dict[str, Any]]:
        response = await self.client.post(
            f"/calendars/{self.tenant.calendar_id}/notifications",
            json=list(items),
            headers=self.headers,
        )
        assert response.status_code == 200, response.text
        created: list[dict[str, Any]] = response.json()
        return created

    async def update_rule(self, rule_id: str, **changes: Any) -> None:
        response = await self.client.put(
            f"/calendars/{self.tenant.calendar_id}/notifications/{rule_id}",
            json=changes,
            headers=self.headers,
        )
        assert response.status_code == 200, response.text

    async def book(self, contact_id: str, start: datetime, **fields: Any) -> dict[str, Any]:
        body = {
            "calendarId": self.tenant.calendar_id,
            "locationId": self.tenant.location_id,
            "contactId": contact_id,
            "startTime": start.isoformat(),
            **fields,
        }
        response = await self.client.post(
            "/calendars/events/appointments", json=body, headers=self.headers
        )
        assert response.status_code == 200, response.text
        booked: dict[str, Any] = response.json()
        return booked

    async def change(self, appointment_id: str, **fields: Any) -> dict[str, Any]:
        response = await self.client.put(
            f"/calendars/events/appointments/{appointment_id}", json=fields, headers=self.headers
        )
        assert response.status_code == 200, response.text
        changed: dict[str, Any] = response.json()
        return changed

    async def delete(self, appointment_id: str) -> None:
        response = await self.client.delete(
            f"/calendars/events/{appointment_id}", headers=self.headers
        )
        assert response.status_code == 201, response.text

    async def deliveries(self, **filters: str) -> list[dict[str, Any]]:
        response = await self.client.get(
            "/deliveries", params={**filters, "limit": 500}, headers=self.headers
        )
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["deliveries"]
        return found

    async def outbox(self, **filters: str) -> list[dict[str, Any]]:
        response = await self.client.get(
            "/outbox", params={**filters, "limit": 500}, headers=self.headers
        )
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["messages"]
        return found

    async def run_at(self, when: datetime) -> int:
        """Move the clock to ``when`` and send everything due by then."""
        self.clock.set(when)
        return await self.dispatcher.drain()


def summary(deliveries: Sequence[dict[str, Any]]) -> list[tuple[str, ...]]:
    """(type, channel, status, reason, recipient) of each delivery, sorted."""
    return sorted(
        (d["notificationType"], d["channel"], d["status"], d["reason"], d["recipient"])
        for d in deliveries
    )


def by_status(deliveries: Sequence[dict[str, Any]], status: str) -> list[dict[str, Any]]:
    return [d for d in deliveries if d["status"] == status]
