"""Wire shapes of HighLevel's location (sub-account)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from calnotify.api.types import InputModel, Text


class LocationUpdate(InputModel):
    name: Text | None = None
    email: Text | None = None
    phone: Text | None = None
    timezone: Text | None = None
    address: Text | None = None
    city: Text | None = None
    state: Text | None = None
    country: Text | None = None
    postal_code: Text | None = None
    website: Text | None = None
    # companyId (required by HighLevel's spec) is accepted and ignored: no agencies here.


class LocationOut(BaseModel):
    id: str
    companyId: str = ""
    name: str
    email: str
    phone: str
    timezone: str
    address: str
    city: str
    state: str
    country: str | None = Field(default=None, description="ISO 3166 alpha-2; absent when unset")
    postalCode: str
    website: str


class LocationEnvelope(BaseModel):
    location: LocationOut
