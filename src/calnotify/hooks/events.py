"""Webhook events, written as deliveries in the transaction of the change that caused
them (docs/semantics.md §8, "Outbound webhooks"): the database is the schedule, so a
committed change never loses its webhooks and a rolled-back one never sends any.

Each event is one delivery of channel ``webhook`` per endpoint of the location that asked
for its type, due at once. The body is built here, from the data as the change left it
(an event says what happened then; it is not re-rendered when sent), and stored as the
delivery's ``body``; its type is the ``subject``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, insert, select

from calnotify.api.types import format_timestamp
from calnotify.appointments import reads
from calnotify.db.statements import Statement, table
from calnotify.db.tx import Tx
from calnotify.deliveries.states import planned
from calnotify.ids import new_id
from calnotify.models import Delivery, WebhookEndpoint
from calnotify.models.delivery import RecipientKind, Trigger
from calnotify.planning.planner import occurrence_id
from calnotify.planning.store import wake

WEBHOOK = "webhook"
# Like every delivery: never sent later than 24 hours after it was due (semantics §6).
DEADLINE = timedelta(hours=24)


class WebhookEvent(StrEnum):
    APPOINTMENT_CREATE = "AppointmentCreate"
    APPOINTMENT_UPDATE = "AppointmentUpdate"
    APPOINTMENT_DELETE = "AppointmentDelete"
    INBOUND_MESSAGE = "InboundMessage"


ALL_EVENTS = tuple(e.value for e in WebhookEvent)

_E = WebhookEndpoint.__table__.c
#: The endpoints of a location that are not disabled.
ENDPOINTS = Statement(
    select(_E.id, _E.url, _E.events).where(
        _E.location_id == bindparam("location_id"), _E.disabled_at.is_(None)
    )
)
_INSERT = Statement(insert(table(Delivery)))


async def endpoints_of(tx: Tx, location_id: str) -> list[Any]:
    [rows] = await tx.fetch((ENDPOINTS, {"location_id": location_id}))
    return rows


def appointment_body(appointment: Any, where: ZoneInfo, rule: str | None = None) -> dict[str, Any]:
    """The appointment in HighLevel's shape, as its API answers show it."""
    return reads.to_event(appointment, where, rule).model_dump(mode="json")


def announce_appointment(
    tx: Tx,
    endpoints: Sequence[Any],
    event: WebhookEvent,
    appointment: Any,
    where: ZoneInfo,
    now: datetime,
    rule: str | None = None,
) -> bool:
    """:func:`announce` an appointment's event, the appointment as the change left it."""
    data = appointment_body(appointment, where, rule)
    location_id = appointment.location_id
    return announce(tx, endpoints, event, location_id, data, now, appointment=appointment)


def announce(
    tx: Tx,
    endpoints: Sequence[Any],
    event: WebhookEvent,
    location_id: str,
    data: dict[str, Any],
    now: datetime,
    *,
    appointment: Any = None,
    appointment_id: str | None = None,
) -> bool:
    """Write ``event`` (``data``: its appointment, or its message for ``InboundMessage``)
    for each of ``endpoints`` that asked for it; whether any was written (the dispatcher is
    to be woken). Writes only: no round trip of its own. ``appointment_id``, without
    ``appointment``: the appointment a message is about (a contact's erasure finds the
    deliveries of their appointments)."""
    wanted = [e for e in endpoints if event.value in e.events.split()]
    if not wanted:
        return False
    key = "message" if event == WebhookEvent.INBOUND_MESSAGE else "appointment"
    payload = {
        "type": event.value,
        "locationId": location_id,
        "timestamp": format_timestamp(now),
        key: data,
    }
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    rows = [_row(e, event, location_id, body, now, appointment) for e in wanted]
    if appointment is None:
        for row in rows:
            row["appointment_id"] = appointment_id
    tx.write_many(_INSERT, rows)
    wake(tx)
    return True


def _row(
    endpoint: Any, event: WebhookEvent, location_id: str, body: str, now: datetime, appointment: Any
) -> dict[str, Any]:
    delivery_id = new_id()
    values = planned(None)
    return {
        **values,
        "status": str(values["status"]),
        "id": delivery_id,
        "location_id": location_id,
        "calendar_id": appointment.calendar_id if appointment is not None else "",
        "appointment_id": appointment.id if appointment is not None else None,
        "instance_id": occurrence_id(appointment) if appointment is not None else "",
        "master_event_id": (appointment.master_id or "") if appointment is not None else "",
        "notification_id": None,
        "notification_type": WEBHOOK,
        "channel": WEBHOOK,
        "receiver_type": WEBHOOK,
        "trigger": Trigger.EVENT.value,
        "recipient_kind": RecipientKind.WEBHOOK.value,
        "recipient_ref": endpoint.id,
        "recipient": endpoint.url,
        "due_at": now,
        "run_at": now,
        "deadline_at": now + DEADLINE,
        "appointment_version": appointment.version if appointment is not None else 0,
        "notification_version": 0,
        # Every event is its own message: the key only has to be unique.
        "dedupe_key": f"{WEBHOOK}:{delivery_id}",
        "subject": event.value,
        "body": body,
        "created_at": now,
        "updated_at": now,
    }
