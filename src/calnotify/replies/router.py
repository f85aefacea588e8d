"""``GET /replies``: the stored replies by SMS and WhatsApp of the token's location
(docs/api.md, "Replies by SMS and WhatsApp"), each in the ``InboundMessage`` webhook's shape."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from calnotify.api.paging import IdFilter, Limit, Skip
from calnotify.auth.deps import require_unversioned
from calnotify.auth.scopes import Scope
from calnotify.auth.tokens import Principal
from calnotify.deps import ReadSessionDep
from calnotify.models.inbound import InboundMessage
from calnotify.replies.reading import list_replies
from calnotify.replies.service import message_body

router = APIRouter(tags=["Replies"])

#: Replies are what contacts wrote: the contacts' read scope (there is no conversations scope).
Reader = Annotated[Principal, Depends(require_unversioned(Scope.CONTACTS_READ))]
_STORED = ("id", "channel", "contact_id", "appointment_id", "from_number", "to_number", "body",
           "provider_message_id", "action", "received_at")  # fmt: skip


class ReplyOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    messageType: str = Field(description="SMS or WhatsApp")
    direction: str = "inbound"
    contactId: str = Field(description="The contact it was matched to; empty when none")
    appointmentId: str = Field(description="The appointment it was matched to; empty when none")
    sender: str = Field(alias="from", description="The sender's number (E.164)")
    to: str
    body: str
    providerMessageId: str
    action: str = Field(description="confirmed, opted_out, opted_in, help or none")
    dateAdded: str


class RepliesOut(BaseModel):
    replies: list[ReplyOut]
    total: int


def reply_out(row: InboundMessage) -> ReplyOut:
    return ReplyOut.model_validate(message_body({n: getattr(row, n) for n in _STORED}))


@router.get("/replies", response_model=RepliesOut, operation_id="list-replies")
async def get_replies(
    principal: Reader,
    session: ReadSessionDep,
    contact_id: Annotated[IdFilter, Query(alias="contactId")] = None,
    appointment_id: Annotated[IdFilter, Query(alias="appointmentId")] = None,
    limit: Limit = 100,
    skip: Skip = 0,
) -> RepliesOut:
    """Replies by SMS and WhatsApp to the location's numbers, newest first: what each said,
    who it was matched to, and what it did."""
    filters = {"contact_id": contact_id, "appointment_id": appointment_id}
    rows, total = await list_replies(session, principal, filters, limit, skip)
    return RepliesOut(replies=[reply_out(r) for r in rows], total=total)
