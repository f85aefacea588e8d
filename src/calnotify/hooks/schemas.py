"""Request and answer bodies of ``/locations/{locationId}/webhooks``."""

from __future__ import annotations

from pydantic import BaseModel, Field

from calnotify.api.types import InputModel


class WebhookCreate(InputModel):
    url: str = Field(max_length=4096)
    events: list[str] | None = Field(default=None, max_length=10)


class WebhookOut(BaseModel):
    id: str
    locationId: str
    url: str
    events: list[str]
    disabled: bool
    disabledAt: str | None = None
    createdAt: str


class WebhookCreated(WebhookOut):
    secret: str = Field(description="The signing secret (whsec_…); shown only here, once")
    previousSecretUntil: str | None = Field(
        default=None,
        description="After a rotation: until when requests are signed with the old secret too",
    )


class WebhookList(BaseModel):
    webhooks: list[WebhookOut]


class WebhookDeleted(BaseModel):
    succeeded: bool = True
