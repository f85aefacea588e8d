"""The delivery lifecycle: every transition of a delivery's status (docs/engine.md).

This package is the only code that writes a delivery's ``status``, ``reason`` or
``attempts``. Each transition is a named function whose SQL only touches rows in the states
it may leave (:data:`~calnotify.deliveries.states.TRANSITIONS`); an in-memory transition
outside that table raises :class:`IllegalTransition`. docs/engine.md shows the same table,
and a test holds the two together.

An attempt is counted when the message is handed over (:func:`hand_over`, in the database,
before the provider is called), so no fault (an exception, a crash, an expired lease) can
make a message go out more often than the maximum attempts: a lease that expires with an
attempt in progress is recorded as an attempt of unknown outcome, and once the maximum is
reached, a rescue ends the delivery ``failed`` (``abandoned``) instead of queueing it again.
After a restore from a backup, what may have been sent since the backup was taken ends
``skipped`` (``restored``) instead of going out again (:func:`skip_restored`).

The dispatcher's transitions (claim, hand-over, renewal, record, rescue) are compiled
statements run in transactions at the gate's send priority: sends go before requests.
Each takes many rows at once; none is ever one transaction per message.
"""

from __future__ import annotations

from calnotify.deliveries.lifecycle.claims import CLAIM, CLAIM_ONE_LOCATION, CLAIMED, claim
from calnotify.deliveries.lifecycle.planned import cancel, cancel_changed_sends, replan
from calnotify.deliveries.lifecycle.reports import attempts_of, provider_update
from calnotify.deliveries.lifecycle.rescue import Rescued, next_run_at, rescue
from calnotify.deliveries.lifecycle.restored import Missed, missed, skip_restored
from calnotify.deliveries.lifecycle.sending import Outcome, hand_over, record, released, renew
from calnotify.deliveries.states import (
    PENDING,
    TRANSITIONS,
    AttemptOutcome,
    DeliveryStatus,
    IllegalTransition,
    Reason,
    check,
    planned,
)

__all__ = [
    "CLAIM",
    "CLAIMED",
    "CLAIM_ONE_LOCATION",
    "PENDING",
    "TRANSITIONS",
    "AttemptOutcome",
    "DeliveryStatus",
    "IllegalTransition",
    "Missed",
    "Outcome",
    "Reason",
    "Rescued",
    "attempts_of",
    "cancel",
    "cancel_changed_sends",
    "check",
    "claim",
    "hand_over",
    "missed",
    "next_run_at",
    "planned",
    "provider_update",
    "record",
    "released",
    "renew",
    "replan",
    "rescue",
    "skip_restored",
]
