"""``/locations/{locationId}/webhooks``: a location's outbound webhooks
(docs/semantics.md §8; the scopes are explained in docs/api.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from calnotify.auth.deps import in_path_location
from calnotify.auth.scopes import Scope
from calnotify.auth.tokens import Principal
from calnotify.config import Settings
from calnotify.deps import ClockDep, SessionDep
from calnotify.hooks import service
from calnotify.hooks.schemas import (
    WebhookCreate,
    WebhookCreated,
    WebhookDeleted,
    WebhookList,
    WebhookOut,
)

router = APIRouter(prefix="/locations/{locationId}/webhooks", tags=["Webhooks"])
# The path's locationId must be the token's own (else 403).
HooksRead = Annotated[Principal, Depends(in_path_location(Scope.LOCATIONS_READ))]
HooksWrite = Annotated[Principal, Depends(in_path_location(Scope.LOCATIONS_WRITE))]


@router.get("", response_model=WebhookList, operation_id="list-webhooks")
async def list_webhooks(principal: HooksRead, session: SessionDep) -> WebhookList:
    """The location's webhooks (without their secrets)."""
    rows = await service.list_endpoints(session, principal.location_id)
    return WebhookList(webhooks=[WebhookOut(**service.to_wire(r)) for r in rows])


@router.post("", response_model=WebhookCreated, status_code=201, operation_id="create-webhook")
async def create_webhook(
    body: WebhookCreate, principal: HooksWrite, session: SessionDep, request: Request
) -> WebhookCreated:
    """``{"url", "events"?}`` (no events: all four); the answer has the signing secret,
    shown this once."""
    settings: Settings = request.app.state.settings
    endpoint = await service.add_endpoint(
        session,
        principal.location_id,
        body.url,
        body.events,
        allow_private=settings.webhook_allow_private,
    )
    return WebhookCreated(**service.to_wire(endpoint, secret=True))


@router.delete("/{webhookId}", response_model=WebhookDeleted, operation_id="delete-webhook")
async def delete_webhook(
    webhookId: str, principal: HooksWrite, session: SessionDep
) -> WebhookDeleted:
    """Remove a webhook; what is still to be sent to it is skipped."""
    await service.remove_endpoint(session, principal.location_id, webhookId)
    return WebhookDeleted()


@router.post(
    "/{webhookId}/rotate", response_model=WebhookCreated, operation_id="rotate-webhook-secret"
)
async def rotate_webhook_secret(
    webhookId: str, principal: HooksWrite, session: SessionDep, clock: ClockDep
) -> WebhookCreated:
    """A new signing secret, shown this once; for 24 hours (``previousSecretUntil``) each
    request is signed with the old secret too, so the receiver can switch without losing
    events."""
    endpoint = await service.rotate_secret(session, principal.location_id, webhookId, clock.now())
    return WebhookCreated(**service.to_wire(endpoint, secret=True))
