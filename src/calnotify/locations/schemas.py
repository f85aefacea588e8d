"""Wire shapes of HighLevel's location (sub-account)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from calnotify.api.types import InputModel, Short, Text


class LocationUpdate(InputModel):
    name: Short | None = None
    email: Text | None = None
    phone: Text | None = None
    timezone: Text | None = None
    address: Short | None = None
    city: Short | None = None
    state: Short | None = None
    country: Text | None = None
    postal_code: Annotated[Text, Field(max_length=32)] | None = None
    website: Annotated[Text, Field(max_length=2048)] | None = None
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
