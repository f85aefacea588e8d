"""Wire shapes of HighLevel's location templates (``GetTemplatesSuccessfulResponseDto``,
``GetEmailTemplateResponseSchema``, ``GetSmsTemplateResponseSchema``).

An email template is ``{"subject", "html"}``; an sms or whatsapp template is ``{"body"}``.
Every input field is optional at the type level: what a create or an update needs is
checked by :mod:`calnotify.templates.service`, so ``null`` reads as "not given" and every
problem of a body is reported at once.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from calnotify.api.types import InputModel, LongText, Text, Timestamp


class TemplateType(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    WHATSAPP = "whatsapp"


class TemplateContentIn(InputModel):
    subject: Text | None = Field(
        default=None, description="Email subject (Liquid, merge fields); email only"
    )
    html: LongText | None = Field(
        default=None, description="Email HTML (Liquid, merge fields); required for email"
    )
    body: LongText | None = Field(
        default=None,
        description="Message text (Liquid, merge fields); required for sms and whatsapp",
    )


class TemplateFieldsIn(InputModel):
    name: Text | None = Field(default=None, description="1 to 255 characters")
    type: TemplateType | None = Field(default=None, description="email, sms or whatsapp")
    template: TemplateContentIn | None = None


class TemplateCreate(TemplateFieldsIn):
    """``name``, ``type`` and the type's content are required."""


class TemplateUpdate(TemplateFieldsIn):
    """Partial: fields given replace the stored ones."""


class EmailTemplateContent(BaseModel):
    subject: str
    html: str


class TextTemplateContent(BaseModel):
    body: str


class TemplateOut(BaseModel):
    id: str
    locationId: str
    name: str
    type: TemplateType
    template: EmailTemplateContent | TextTemplateContent
    dateAdded: Timestamp
    dateUpdated: Timestamp


class TemplateList(BaseModel):
    templates: list[TemplateOut]
    total: int
    totalCount: int = Field(description="Same as total (the name HighLevel's spec uses)")


class TemplateDeleted(BaseModel):
    succeded: bool = True
