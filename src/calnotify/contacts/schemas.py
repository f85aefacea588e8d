"""Wire shapes of HighLevel's CreateContactDto / UpdateContactDto / contact responses."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from calnotify.api.types import Bool, InputModel, Short, Text, Timestamp

MAX_TAGS = 100
ECHOED_FIELDS = ("gender", "dateOfBirth", "assignedTo", "customFields", "inboundDndSettings")


class DndSetting(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    status: Literal["active", "inactive", "permanent"]
    message: Text | None = None
    code: Text | None = None


class DndSettings(BaseModel):
    """Per-channel do-not-disturb, keyed by HighLevel's channel names."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    call: DndSetting | None = Field(default=None, alias="Call")
    email: DndSetting | None = Field(default=None, alias="Email")
    sms: DndSetting | None = Field(default=None, alias="SMS")
    whatsapp: DndSetting | None = Field(default=None, alias="WhatsApp")
    gmb: DndSetting | None = Field(default=None, alias="GMB")
    fb: DndSetting | None = Field(default=None, alias="FB")


class ContactFieldsIn(InputModel):
    model_config = ConfigDict(extra="allow")

    first_name: Short | None = None
    last_name: Short | None = None
    name: Text | None = Field(default=None, max_length=511)
    email: Text | None = None
    phone: Text | None = None
    timezone: Text | None = None
    company_name: Short | None = None
    address1: Short | None = None
    city: Short | None = None
    state: Short | None = None
    country: Annotated[Text, Field(max_length=64)] | None = None
    postal_code: Annotated[Text, Field(max_length=32)] | None = None
    website: Annotated[Text, Field(max_length=2048)] | None = None
    source: Short | None = None
    dnd: Bool | None = None
    dnd_settings: DndSettings | None = None
    tags: Annotated[list[Text], Field(max_length=MAX_TAGS)] | None = None

    def echoed(self) -> dict[str, Any]:
        extra = self.model_extra or {}
        return {k: extra[k] for k in ECHOED_FIELDS if extra.get(k) is not None}


class ContactCreate(ContactFieldsIn):
    location_id: Text


class ContactUpdate(ContactFieldsIn):
    pass


class ContactOut(BaseModel):
    """HighLevel's contact (GetContectByIdSchema), plus echoed fields."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    locationId: str
    firstName: str
    lastName: str
    email: str
    emailLowerCase: str
    timezone: str
    companyName: str
    phone: str
    dnd: bool
    dndSettings: dict[str, Any]
    type: str = "lead"
    source: str
    address1: str
    city: str
    state: str
    country: str
    postalCode: str
    website: str
    tags: list[str]
    firstNameLowerCase: str
    lastNameLowerCase: str
    fullNameLowerCase: str
    dateAdded: Timestamp
    dateUpdated: Timestamp


class ContactEnvelope(BaseModel):
    contact: ContactOut


class ContactUpdated(BaseModel):
    succeded: bool = True
    contact: ContactOut


class Succeded(BaseModel):
    succeded: bool = True
