"""SMS and WhatsApp over Twilio's Messages API, with httpx.

Not Twilio's SDK: its async client retries POSTs, which would send duplicates. One POST
per message, no automatic retry; the dispatcher decides what to retry.

Answers (docs/engine.md, "Provider answers"): any 2xx means Twilio took the message, even
with an odd body (it is recorded as sent and the oddity logged: retrying would send a real
second SMS). HTTP 429, 5xx and network trouble are retryable, honouring ``Retry-After``; a
timeout or dropped connection after the request was written is marked "may have acted".
Every other 4xx is permanent (21211 invalid number, 21610 unsubscribed, 21614 not a mobile
number, 21408 region not enabled, …), except the few Twilio codes that mean "later" (20429
too many requests, 30001 queue overflow). 21610 says the recipient replied STOP to the sender:
the error says so (``opted_out``), and the contact's DND for the channel is set.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from calnotify.channels.base import (
    ChannelAdapter,
    Message,
    PermanentSendError,
    Receipt,
    RetryableSendError,
)
from calnotify.config import Settings

RETRYABLE_CODES = {20429, 30001}
#: "Attempt to send to unsubscribed recipient": the number opted out of this sender.
OPTED_OUT_CODE = 21610
log = logging.getLogger("calnotify.twilio")


class TwilioAdapter(ChannelAdapter):
    provider = "twilio"
    concurrency = 16

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None):
        self.settings = settings
        # httpx bounds each step (connect, write, each read); a server dripping its answer
        # byte by byte is cut off here.
        self.send_timeout = settings.twilio_timeout * 2
        sid = settings.twilio_account_sid
        self.url = f"{settings.twilio_base_url.rstrip('/')}/2010-04-01/Accounts/{sid}/Messages.json"
        self.client = httpx.AsyncClient(
            auth=(sid, settings.twilio_auth_token.get_secret_value()),
            timeout=settings.twilio_timeout,
            transport=transport,
            follow_redirects=False,
        )

    def form(self, message: Message) -> dict[str, str]:
        s = self.settings
        if message.channel == "whatsapp":
            sender = message.from_number or s.twilio_whatsapp_from or s.twilio_from_number
            to, sender = _whatsapp(message.to), _whatsapp(sender)
        else:
            to, sender = message.to, message.from_number or s.twilio_from_number
        form = {"To": to, "From": sender, "Body": message.body}
        if s.public_url:
            form["StatusCallback"] = f"{s.public_url.rstrip('/')}/webhooks/twilio/status"
        return form

    async def send(self, message: Message) -> Receipt:
        form = self.form(message)
        if not form["From"]:
            raise PermanentSendError(f"no sender number configured for {message.channel}")
        try:
            response = await self.client.post(self.url, data=form)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Nothing reached Twilio.
            raise RetryableSendError(f"Twilio: cannot connect: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            # The request was (at least partly) written: Twilio may have taken it.
            raise RetryableSendError(
                f"Twilio: no answer: {type(exc).__name__}: {exc}", maybe_sent=True
            ) from exc
        if 200 <= response.status_code < 300:
            return Receipt(self.provider, _sid(response, message))
        code, text = _error(response)
        detail = f"Twilio {response.status_code}" + (f" ({code})" if code else "") + f": {text}"
        if response.status_code == 429 or response.status_code >= 500 or code in RETRYABLE_CODES:
            raise RetryableSendError(detail[:1000], retry_after=retry_after(response))
        raise PermanentSendError(detail[:1000], opted_out=code == OPTED_OUT_CODE)

    async def close(self) -> None:
        await self.client.aclose()


def _sid(response: httpx.Response, message: Message) -> str:
    """The message sid of a 2xx answer; an answer without one is still an acceptance."""
    try:
        sid = response.json().get("sid")
    except (ValueError, AttributeError):
        sid = None
    if isinstance(sid, str) and sid:
        return sid[:255]
    log.warning(
        "twilio: %s accepted delivery %s but its answer has no message sid: %.200r",
        response.status_code,
        message.delivery_id,
        response.text,
    )
    return ""


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date), or None."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _whatsapp(number: str) -> str:
    return number if not number or number.startswith("whatsapp:") else f"whatsapp:{number}"


def _error(response: httpx.Response) -> tuple[int | None, str]:
    try:
        data = response.json()
    except ValueError:
        return None, response.text[:300]
    if not isinstance(data, dict):
        return None, str(data)[:300]
    code = data.get("code")
    return (code if isinstance(code, int) else None), str(data.get("message", ""))[:300]


Fields = dict[str, str] | list[tuple[str, str]]


def signature(auth_token: str, url: str, params: Fields) -> str:
    """Twilio's request signature: HMAC-SHA1 of the URL and the form fields sorted by name
    (a repeated field contributes each of its values, in order)."""
    pairs = list(params.items()) if isinstance(params, dict) else list(params)
    payload = url + "".join(f"{key}{value}" for key, value in sorted(pairs, key=lambda p: p[0]))
    digest = hmac.new(auth_token.encode(), payload.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def signature_valid(auth_token: str, url: str, params: Fields, given: str) -> bool:
    expected = signature(auth_token, url, params).encode()
    return bool(auth_token) and hmac.compare_digest(expected, given.encode("utf-8", "replace"))
