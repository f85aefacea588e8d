"""What a provider's answer means for a delivery (docs/engine.md, "Provider answers").

A :class:`~calnotify.channels.base.Receipt` is a sent message; a
:class:`~calnotify.channels.base.RetryableSendError` is retried after the back-off (or the
provider's ``Retry-After``) while attempts and the deadline allow; anything else fails it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from email.utils import formataddr
from typing import Any

from calnotify.channels.addresses import mailbox
from calnotify.channels.base import (
    Message,
    PermanentSendError,
    Receipt,
    RetryableSendError,
    SendError,
)
from calnotify.deliveries.lifecycle import DeliveryStatus, Outcome, Reason
from calnotify.dispatch.backoff import backoff_seconds
from calnotify.dispatch.settings import DispatchSettings

log = logging.getLogger("calnotify.dispatch")


def classify(
    delivery: Any,
    message: Message,
    answer: Receipt | SendError,
    answered: datetime,
    settings: DispatchSettings,
) -> Outcome:
    """The outcome of one attempt (``delivery.attempts`` counts it already); never raises:
    a fault here is the message's own failure, and the attempt is still recorded."""
    try:
        return _classify(delivery, message, answer, answered, settings)
    except Exception as exc:  # a bug here must not lose the attempt
        log.exception("dispatch: cannot classify the answer for %s", delivery.id)
        return Outcome(
            delivery,
            DeliveryStatus.FAILED,
            Reason.ERROR,
            f"cannot classify the provider's answer: {exc!r}"[:2000],
            handed_over=True,
            at=answered,
            attempt=delivery.attempts,
        )


def _classify(
    delivery: Any,
    message: Message,
    answer: Receipt | SendError,
    answered: datetime,
    settings: DispatchSettings,
) -> Outcome:
    outcome = Outcome(
        delivery,
        DeliveryStatus.SENT,
        handed_over=True,
        subject=message.subject,
        body=message.body,
        recipient=message.to,
        sender=sender_of(message),
        at=answered,
        attempt=delivery.attempts,
    )
    if isinstance(answer, Receipt):
        outcome.provider, outcome.provider_id = answer.provider, answer.message_id
        return outcome
    outcome.error = str(answer)[:2000] or type(answer).__name__
    if answer.maybe_sent:
        outcome.error += " (the provider may have acted on it)"
    outcome.status = DeliveryStatus.FAILED
    if not isinstance(answer, RetryableSendError):
        outcome.reason = Reason.PERMANENT
        outcome.opted_out = isinstance(answer, PermanentSendError) and answer.opted_out
        return outcome
    wait = backoff_seconds(delivery.attempts, settings.backoff_base, settings.backoff_cap)
    if answer.retry_after is not None:
        # Not capped: sending earlier than the provider asked only meets another refusal;
        # a wait past the deadline fails the delivery below.
        wait = max(wait, answer.retry_after)
    retry_at = answered + timedelta(seconds=wait)
    if delivery.attempts >= settings.max_attempts:
        outcome.reason = Reason.RETRIES_EXHAUSTED
    elif retry_at > delivery.deadline_at:
        outcome.reason = Reason.DEADLINE
    else:
        outcome.status, outcome.reason = DeliveryStatus.SCHEDULED, Reason.RETRYING
        outcome.retry_at = retry_at
    return outcome


def sender_of(message: Message) -> str:
    """Who the message went out as, for the delivery's record (docs/semantics.md §7)."""
    if message.channel in ("sms", "whatsapp"):
        return message.from_number
    if message.channel != "email":
        return ""
    address = message.from_address
    # formataddr refuses a non-ASCII local part (an allowed sender sent with SMTPUTF8).
    sender = (
        formataddr((message.from_name, address))
        if address.isascii()
        else mailbox(message.from_name, address)
    )
    return f"{sender}; Reply-To: {message.reply_to}" if message.reply_to else sender
