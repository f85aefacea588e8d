"""What every channel adapter implements.

    SendError                 a message could not be handed over
    ├── RetryableSendError    try again later (timeouts, 4xx SMTP, 429/5xx HTTP, …)
    └── PermanentSendError    never going to work (invalid number, unsubscribed, 5xx SMTP)

An adapter's ``send`` either returns a :class:`Receipt` or raises one of these; nothing else
escapes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

log = logging.getLogger("calnotify.send")


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # "text/calendar"
    data: bytes
    params: tuple[tuple[str, str], ...] = ()  # extra Content-Type parameters


@dataclass(frozen=True)
class Message:
    """A rendered message for one recipient. (Not slotted: it crosses from the render
    processes, and a slotted dataclass pickles through Python code.)"""

    delivery_id: str
    location_id: str
    appointment_id: str
    calendar_id: str
    notification_type: str
    channel: str
    to: str
    # Who it is from, as ``calnotify.channels.senders.choose_sender`` decided: an address
    # or number here is the operator's or an allowed sender of the location, never merely
    # what a rule asked for. Each adapter applies its own default (CALNOTIFY_EMAIL_FROM,
    # the Twilio numbers) when these are empty.
    from_name: str = ""
    from_address: str = ""
    from_number: str = ""
    reply_to: str = ""  # email: the Reply-To address (none when empty)
    subject: str = ""
    body: str = ""
    html: str = ""
    user_id: str = ""  # the inbox owner, for in-app messages
    attachments: tuple[Attachment, ...] = field(default_factory=tuple)
    # The appointment's version, for calendar invitations (SEQUENCE).
    appointment_version: int = 0
    # The adapter's own wire form, built where the message is composed (``wire_builder``).
    prepared: object = None


#: Builds an adapter's wire form of a message (see ChannelAdapter.wire_builder).
WireBuilder = Callable[[Message], Message]


@dataclass(frozen=True, slots=True)
class Receipt:
    provider: str
    message_id: str = ""


class SendError(Exception):
    """A message could not be handed over, or its fate is unknown.

    ``maybe_sent``: the request reached the provider and the answer was lost (a timeout or
    a dropped connection after the request was written): the provider may have acted.
    """

    def __init__(self, message: str = "", *, maybe_sent: bool = False) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent


class RetryableSendError(SendError):
    """Try again later; ``retry_after`` (seconds) when the provider said when."""

    def __init__(
        self, message: str = "", *, retry_after: float | None = None, maybe_sent: bool = False
    ) -> None:
        super().__init__(message, maybe_sent=maybe_sent)
        self.retry_after = retry_after


class PermanentSendError(SendError):
    """Never going to work. ``opted_out``: the recipient has opted out of messages from
    this sender at the provider (Twilio 21610); their DND for the channel is set."""

    def __init__(
        self, message: str = "", *, maybe_sent: bool = False, opted_out: bool = False
    ) -> None:
        super().__init__(message, maybe_sent=maybe_sent)
        self.opted_out = opted_out


def unexpected(exc: BaseException) -> PermanentSendError:
    """An exception no adapter should raise: the message's own failure, never retried (it
    may have been handed over, and the same fault would repeat)."""
    log.error("send: unexpected %s: %s", type(exc).__name__, exc, exc_info=exc)
    text = f"unexpected error while sending: {type(exc).__name__}: {exc}"
    return PermanentSendError(text[:2000], maybe_sent=True)


class ChannelAdapter:
    """Base of the adapters. Subclasses implement ``send``; batch-friendly ones override
    ``send_many`` (the dispatcher hands over every message of a claim at once)."""

    provider: str = "adapter"
    concurrency: int = 16
    # The longest one message may take to be handed over (connect, send, answer); past it,
    # the attempt is a retry that the provider may have acted on.
    send_timeout: float = 60.0

    def wire_builder(self) -> WireBuilder | None:
        """What builds the adapter's wire form of a message (CPU work on tenant text), done
        where messages are composed: a render process, within the budget. A picklable
        callable (a module's function, or a partial of one), or None."""
        return None

    async def send(self, message: Message) -> Receipt:
        raise NotImplementedError

    async def send_many(self, messages: Sequence[Message]) -> list[Receipt | SendError]:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(message: Message) -> Receipt | SendError:
            async with gate:
                try:
                    async with asyncio.timeout(self.send_timeout):
                        return await self.send(message)
                except SendError as exc:
                    return exc
                except TimeoutError:
                    text = f"{self.provider}: no answer within {self.send_timeout:g} s"
                    return RetryableSendError(text, maybe_sent=True)
                except Exception as exc:
                    return unexpected(exc)

        return list(await asyncio.gather(*(one(m) for m in messages)))

    async def close(self) -> None:
        return None
