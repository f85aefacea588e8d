"""A claimed webhook delivery, ready to send: what the dispatcher reads of it and its
endpoint, and its message (or why it ends here). Webhooks skip composing: their body was
written with the event (:mod:`calnotify.hooks.events`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select

from calnotify.channels.base import Message
from calnotify.db.statements import Statement
from calnotify.deliveries.lifecycle import DeliveryStatus, Outcome, Reason
from calnotify.hooks.events import WEBHOOK
from calnotify.models import Delivery, WebhookEndpoint

_D = Delivery.__table__.c
_E = WebhookEndpoint.__table__.c
#: The body of each webhook delivery with its endpoint, which must be of the delivery's
#: own location (no row: the endpoint was removed).
WEBHOOKS = Statement(
    select(_D.id, _D.subject, _D.body, _E.id.label("endpoint_id"), _E.url, _E.secret)
    .add_columns(_E.disabled_at, _E.previous_secret, _E.previous_secret_until)
    .join(WebhookEndpoint, (_E.id == _D.recipient_ref) & (_E.location_id == _D.location_id))
    .where(_D.id.in_(bindparam("webhooks", expanding=True)))
)


@dataclass(frozen=True)
class Target:
    """What the adapter needs besides the message: whom to sign for, and the endpoint to
    disable when it answers 410."""

    endpoint_id: str
    secret: str
    previous: str = ""  # the secret before a rotation, during its grace period


def webhook_ids(chunk: Sequence[Any]) -> list[str]:
    return [d.id for d in chunk if d.channel == WEBHOOK]


def message_of(delivery: Any, found: Any, now: datetime) -> Outcome | Message:
    """The message of a webhook delivery, or the outcome that ends it (``found``: its row
    of :data:`WEBHOOKS`, None when its endpoint is gone)."""
    if found is None or found.disabled_at is not None:
        return Outcome(delivery, DeliveryStatus.SKIPPED, Reason.INACTIVE)
    if now > delivery.deadline_at:
        return Outcome(delivery, DeliveryStatus.SKIPPED, Reason.LATE)
    return Message(
        delivery_id=delivery.id,
        location_id=delivery.location_id,
        appointment_id=delivery.instance_id or delivery.appointment_id or "",
        calendar_id=delivery.calendar_id,
        notification_type=delivery.notification_type,
        channel=WEBHOOK,
        to=found.url,
        subject=found.subject,
        body=found.body,
        prepared=Target(found.endpoint_id, found.secret, _previous(found, now)),
    )


def _previous(found: Any, now: datetime) -> str:
    until = found.previous_secret_until
    return found.previous_secret if until is not None and now < until else ""
