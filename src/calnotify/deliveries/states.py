"""A delivery's statuses, reasons and the transitions between them (docs/engine.md,
"Transitions"): the vocabulary :mod:`calnotify.deliveries.lifecycle` writes in."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class DeliveryStatus(StrEnum):
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


class Reason(StrEnum):
    """Why a delivery is where it is (``reason`` on the wire)."""

    NONE = ""
    # skipped
    LATE = "late"
    PAST = "past"
    DND = "dnd"
    NO_ADDRESS = "no_address"
    INACTIVE = "inactive"
    STALE = "stale"
    # the database was restored from a backup taken before it was due: it may have been
    # sent after the backup was taken
    RESTORED = "restored"
    # scheduled again after a retryable error
    RETRYING = "retrying"
    # failed
    PERMANENT = "permanent"
    RETRIES_EXHAUSTED = "retries_exhausted"
    DEADLINE = "deadline"
    RENDER = "render"
    ABANDONED = "abandoned"
    ERROR = "error"
    # failed, as the provider reported after accepting it (Twilio status callbacks)
    UNDELIVERED = "undelivered"
    PROVIDER_FAILED = "failed"
    # cancelled: what changed since it was planned
    RESCHEDULED = "rescheduled"
    SUPERSEDED = "superseded"
    APPOINTMENT_NEW = "appointment_new"
    APPOINTMENT_CONFIRMED = "appointment_confirmed"
    APPOINTMENT_CANCELLED = "appointment_cancelled"
    APPOINTMENT_SHOWED = "appointment_showed"
    APPOINTMENT_NOSHOW = "appointment_noshow"
    APPOINTMENT_INVALID = "appointment_invalid"
    APPOINTMENT_RESTORED = "appointment_restored"
    APPOINTMENT_DELETED = "appointment_deleted"
    CALENDAR_CHANGED = "calendar_changed"
    CALENDAR_DELETED = "calendar_deleted"
    RULE_CHANGED = "rule_changed"
    RULE_DELETED = "rule_deleted"
    RULE_DEACTIVATED = "rule_deactivated"
    CONTACT_DELETED = "contact_deleted"


class AttemptOutcome(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    # The worker lost the attempt (crash, expired lease): the provider may have the message.
    UNKNOWN = "unknown"


class IllegalTransition(RuntimeError):
    pass


PENDING = (DeliveryStatus.SCHEDULED, DeliveryStatus.SENDING)
_S = DeliveryStatus

# transition: (states it leaves, states it reaches). None is "no row yet".
TRANSITIONS: dict[str, tuple[tuple[DeliveryStatus | None, ...], tuple[DeliveryStatus, ...]]] = {
    "plan": ((None,), (_S.SCHEDULED, _S.SKIPPED)),
    "replan": ((_S.CANCELLED,), (_S.SCHEDULED, _S.SKIPPED)),
    "cancel": ((_S.SCHEDULED,), (_S.CANCELLED,)),
    "claim": ((_S.SCHEDULED,), (_S.SENDING,)),
    "hand_over": ((_S.SENDING,), (_S.SENDING,)),
    "renew": ((_S.SENDING,), (_S.SENDING,)),
    "rescue": ((_S.SENDING,), (_S.SCHEDULED, _S.FAILED)),
    "record_sent": ((_S.SENDING,), (_S.SENT,)),
    "record_retry": ((_S.SENDING,), (_S.SCHEDULED,)),
    "release": ((_S.SENDING,), (_S.SCHEDULED,)),
    "record_failed": ((_S.SENDING,), (_S.FAILED,)),
    "record_skipped": ((_S.SENDING,), (_S.SKIPPED,)),
    "provider_update": ((_S.SENT,), (_S.SENT, _S.FAILED)),
    "skip_restored": ((_S.SCHEDULED, _S.SENDING), (_S.SKIPPED,)),
}


def check(transition: str, source: str | None, target: str) -> None:
    """Raise :class:`IllegalTransition` unless ``transition`` may take ``source`` to ``target``."""
    sources, targets = TRANSITIONS[transition]
    if source not in sources or target not in targets:
        raise IllegalTransition(f"{transition}: {source} → {target} is not allowed")


def planned(skip: Reason | None) -> dict[str, Any]:
    """The lifecycle columns of a delivery as the planner writes it (``plan`` / ``replan``)."""
    status = DeliveryStatus.SKIPPED if skip is not None else DeliveryStatus.SCHEDULED
    check("plan", None, status)
    return {
        "status": status,
        "reason": skip.value if skip is not None else "",
        "attempts": 0,
        "handed_over_at": None,
        "lease_until": None,
        "claim_token": None,
        "last_error": "",
    }
