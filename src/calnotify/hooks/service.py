"""A location's webhook endpoints: add, list, remove, rotate their secret (the API and
``calnotify webhooks`` alike; docs/semantics.md §8, "Outbound webhooks"). Services flush,
never commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.api.types import format_timestamp
from calnotify.errors import BadRequest, FieldError, NotFound
from calnotify.hooks.events import ALL_EVENTS
from calnotify.hooks.signing import ROTATION_GRACE, new_secret
from calnotify.hooks.urls import WebhookURLError, check_url
from calnotify.ids import looks_like_id
from calnotify.models import Location, WebhookEndpoint

#: Endpoints a location may have at most (each event is a delivery to each of them).
MAX_ENDPOINTS = 20


def checked_events(events: Sequence[str] | None) -> list[str]:
    """The event types asked for, in the canonical order, once; none asked: all four."""
    if not events:
        return list(ALL_EVENTS)
    unknown = sorted({e for e in events if e not in ALL_EVENTS})
    if unknown:
        allowed = ", ".join(ALL_EVENTS)
        raise BadRequest(
            [FieldError("events", f"unknown event type {', '.join(unknown)} (allowed: {allowed})")]
        )
    return [e for e in ALL_EVENTS if e in events]


async def add_endpoint(
    session: AsyncSession,
    location_id: str,
    url: str,
    events: Sequence[str] | None,
    *,
    allow_private: bool,
) -> WebhookEndpoint:
    """A new endpoint of the location, with a new secret (shown once, by the caller)."""
    try:
        url = check_url(url, allow_private=allow_private)
    except WebhookURLError as exc:
        raise BadRequest([FieldError("url", str(exc))]) from None
    wanted = checked_events(events)
    if await session.get(Location, location_id) is None:
        raise NotFound("Location not found")
    count = await session.scalar(
        select(func.count()).where(WebhookEndpoint.location_id == location_id)
    )
    if (count or 0) >= MAX_ENDPOINTS:
        raise BadRequest(f"a location has at most {MAX_ENDPOINTS} webhooks; remove one first")
    endpoint = WebhookEndpoint(
        location_id=location_id, url=url, events=" ".join(wanted), secret=new_secret()
    )
    session.add(endpoint)
    await session.flush()
    return endpoint


async def list_endpoints(session: AsyncSession, location_id: str) -> list[WebhookEndpoint]:
    rows = await session.scalars(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.location_id == location_id)
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    )
    return list(rows)


async def remove_endpoint(
    session: AsyncSession, location_id: str, endpoint_id: str
) -> WebhookEndpoint:
    """Remove one of the location's endpoints (another location's is not found): what is
    still to be sent to it is skipped when its turn comes."""
    endpoint = await _owned(session, location_id, endpoint_id)
    await session.delete(endpoint)
    await session.flush()
    return endpoint


async def rotate_secret(
    session: AsyncSession, location_id: str, endpoint_id: str, now: datetime
) -> WebhookEndpoint:
    """A new signing secret for one of the location's endpoints (shown once, by the
    caller); for :data:`~calnotify.hooks.signing.ROTATION_GRACE` its requests are signed
    with the old one too. Rotating again within it drops the secret before the old one."""
    endpoint = await _owned(session, location_id, endpoint_id)
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_until = now + ROTATION_GRACE
    endpoint.secret = new_secret()
    await session.flush()
    return endpoint


async def _owned(session: AsyncSession, location_id: str, endpoint_id: str) -> WebhookEndpoint:
    endpoint = (
        await session.get(WebhookEndpoint, endpoint_id) if looks_like_id(endpoint_id) else None
    )
    if endpoint is None or endpoint.location_id != location_id:
        raise NotFound("Webhook not found")
    return endpoint


def to_wire(endpoint: WebhookEndpoint, *, secret: bool = False) -> dict[str, Any]:
    """An endpoint as the API and the command line show it (``secret``: at its creation)."""
    shown: dict[str, Any] = {
        "id": endpoint.id,
        "locationId": endpoint.location_id,
        "url": endpoint.url,
        "events": endpoint.events.split(),
        "disabled": endpoint.disabled_at is not None,
        "disabledAt": format_timestamp(endpoint.disabled_at) if endpoint.disabled_at else None,
        "createdAt": format_timestamp(endpoint.created_at),
    }
    if secret:
        shown["secret"] = endpoint.secret
        until = endpoint.previous_secret_until
        shown["previousSecretUntil"] = format_timestamp(until) if until else None
    return shown
