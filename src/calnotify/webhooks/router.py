"""Twilio's webhooks: ``POST /webhooks/twilio/status`` (message status callbacks) and
``POST /webhooks/twilio/inbound`` (replies by SMS and WhatsApp, :mod:`calnotify.replies`).

Each request is verified with ``X-Twilio-Signature`` (HMAC-SHA1 with the auth token over
the URL Twilio called and the form fields); a bad signature gets 403 and changes nothing.
The URL is ``CALNOTIFY_PUBLIC_URL`` + the path when that is set (behind a proxy the request
URL the service sees is not the one Twilio signed), else the request URL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.channels.twilio import OPTED_OUT_CODE, signature_valid
from calnotify.config import Settings
from calnotify.contacts.dnd import opted_out_at_provider
from calnotify.deliveries import lifecycle
from calnotify.deliveries.lifecycle import DeliveryStatus
from calnotify.deps import ClockDep, DatabaseDep, PlanningDep
from calnotify.errors import Forbidden
from calnotify.models import Delivery
from calnotify.replies.service import Inbound, handle_reply

router = APIRouter(prefix="/webhooks", tags=["Webhooks"])

# Later callbacks may arrive before earlier ones; a status never moves backwards.
_RANK = {"accepted": 0, "queued": 0, "sending": 1, "sent": 2, "delivered": 3, "read": 4,
         "undelivered": 3, "failed": 3}  # fmt: skip
_FAILED = {"undelivered", "failed"}


class Received(BaseModel):
    received: bool = True


async def signed_by_twilio(request: Request) -> dict[str, str]:
    """The callback's form fields, once its signature is verified (403 otherwise).

    A dependency declared before the route's session: a forged or misdirected callback is
    refused before any unit of work opens, so it never takes SQLite's write lock nor waits
    behind writers (and no lock is held while the body arrives).
    """
    settings: Settings = request.app.state.settings
    token = settings.twilio_auth_token.get_secret_value()
    raw = (await request.body()).decode("utf-8", "replace")
    pairs = parse_qsl(raw, keep_blank_values=True)
    url = str(request.url)
    if settings.public_url:
        url = settings.public_url.rstrip("/") + request.url.path
        if request.url.query:
            url += "?" + request.url.query
    given = request.headers.get("x-twilio-signature", "")
    if not settings.twilio_configured or not signature_valid(token, url, pairs, given):
        raise Forbidden("Invalid Twilio signature")
    return dict(pairs)


@router.post("/twilio/status", response_model=Received, operation_id="twilio-status")
async def twilio_status(
    params: Annotated[dict[str, str], Depends(signed_by_twilio)],
    db: DatabaseDep,  # the unit of work opens after the signature check: see signed_by_twilio
    clock: ClockDep,
) -> Received:
    """Record delivered / undelivered / failed on the delivery Twilio reports on. A failure
    with error 21610 (the number opted out) also sets the recipient's DND for the channel,
    as the same error on send does (docs/semantics.md §8, "Replies")."""
    sid, status = params.get("MessageSid", ""), params.get("MessageStatus", "").lower()
    if not sid or status not in _RANK:
        return Received()
    async with db.session() as session:
        delivery = await _reported(session, sid, status, params, clock.now())
    opted_out = status in _FAILED and params.get("ErrorCode", "") == str(OPTED_OUT_CODE)
    if delivery is not None and opted_out:
        async with db.transaction() as tx:
            await opted_out_at_provider(
                tx, delivery.location_id, delivery.recipient, delivery.channel, clock.now()
            )
    return Received()


async def _reported(
    session: AsyncSession, sid: str, status: str, params: dict[str, str], now: datetime
) -> Delivery | None:
    """Record the report on the delivery with Twilio's ``sid``; that delivery, or None when
    there is none or the report is older than what is recorded."""
    delivery = await session.scalar(
        select(Delivery)
        .where(Delivery.provider == "twilio", Delivery.provider_message_id == sid)
        .with_for_update()
    )
    if delivery is None or _RANK.get(delivery.provider_status, -1) > _RANK[status]:
        return None
    error = ""
    if status in _FAILED and delivery.status == DeliveryStatus.SENT:
        code = params.get("ErrorCode", "")
        error = f"Twilio {status}" + (f" (error {code})" if code else "")
    # A report that arrives before the send is recorded only updates the provider status.
    await lifecycle.provider_update(session, delivery, status, now, failed_error=error)
    return delivery


def twiml(message: str = "") -> Response:
    """A TwiML answer: ``<Response/>`` (no reply), or one message back to the sender."""
    inner = f"<Message>{escape(message)}</Message>" if message else ""
    xml = f'<?xml version="1.0" encoding="UTF-8"?><Response>{inner}</Response>'
    return Response(xml, media_type="text/xml")


@router.post(
    "/twilio/inbound",
    response_class=Response,
    responses={200: {"content": {"text/xml": {}}, "description": "TwiML"}},
    operation_id="twilio-inbound",
)
async def twilio_inbound(
    params: Annotated[dict[str, str], Depends(signed_by_twilio)],
    db: DatabaseDep,
    clock: ClockDep,
    planning: PlanningDep,
) -> Response:
    """A reply by SMS or WhatsApp: stored, and acted on when it is a keyword
    (docs/semantics.md §8, "Replies"); answered with TwiML."""
    answered = await handle_reply(db, Inbound.of(params), clock.now(), planning.horizon)
    planning.planned(answered.due)
    return twiml(answered.answer)
