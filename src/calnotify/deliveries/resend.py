"""Resending a delivery that ended ``failed`` or ``skipped``, by hand (docs/semantics.md §6,
docs/api.md ``POST /deliveries/{deliveryId}/resend``).

The resend is a new delivery, linked to the one it resends (``resend_of``) with who asked
(``requested_by``) and when (``requested_at``), planned by the planner's own code
(:func:`calnotify.planning.planner.add_rows`: the recipient's address resolved as the
rule says today, do-not-disturb and a missing address skip it at once) and written by
its own writer (:func:`calnotify.planning.store.write`) as a ``scheduled`` delivery due
now, stamped with the current appointment and rule versions. The dispatcher then claims,
fences, composes (senders checked) and sends it like any other: one path. A delivery that
was sent is never sent again this way (409), nor is one already resent and not given up.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select

from calnotify.appointments.rows import COLUMNS, row_of
from calnotify.auth.tokens import Principal
from calnotify.db.engine import Database
from calnotify.db.statements import Statement
from calnotify.deliveries.states import DeliveryStatus
from calnotify.errors import Conflict, NotFound
from calnotify.hooks.events import WEBHOOK
from calnotify.ids import looks_like_id, new_id
from calnotify.models import Appointment, Delivery, Notification
from calnotify.models.delivery import RecipientKind, Trigger
from calnotify.planning import store
from calnotify.planning.planner import DEADLINE, Plan, Wanted, add_rows
from calnotify.planning.recipients import RecipientRef

RESENDABLE = (DeliveryStatus.FAILED.value, DeliveryStatus.SKIPPED.value)

_D = Delivery.__table__.c
_A = Appointment.__table__.c
_N = Notification.__table__.c
_DELIVERY = Statement(
    select(*_D).where(_D.id == bindparam("id"), _D.location_id == bindparam("location_id"))
)
_APPOINTMENT = Statement(select(*[_A[n] for n in COLUMNS]).where(_A.id == bindparam("id")))
_RULE = Statement(select(*_N).where(_N.id == bindparam("id")))
#: A resend of the delivery that is pending or went out: resent already.
_RESENT = Statement(
    select(_D.id, _D.status)
    .where(_D.resend_of == bindparam("id"), _D.status.notin_((*RESENDABLE, "cancelled")))
    .limit(1)
)


async def resend(
    db: Database, principal: Principal, delivery_id: str, now: datetime
) -> tuple[str, bool]:
    """Plan a resend of the location's delivery ``delivery_id``; the new delivery's id,
    and whether it is due to send (not skipped at once). 404 for another location's or an
    unknown delivery, 409 when it may not be resent (the message says why)."""
    if not looks_like_id(delivery_id):
        raise NotFound("Delivery not found")
    async with db.transaction() as tx:
        found = {"id": delivery_id, "location_id": principal.location_id}
        [rows] = await tx.fetch((_DELIVERY, found))
        if not rows:
            raise NotFound("Delivery not found")
        old = rows[0]
        _check_status(old)
        appointments, rules, resent = await tx.fetch(
            (_APPOINTMENT, {"id": old.appointment_id}),
            (_RULE, {"id": old.notification_id}),
            (_RESENT, {"id": old.id}),
        )
        if resent:
            raise Conflict(
                f"Delivery {old.id} was resent already as {resent[0].id} ({resent[0].status})"
            )
        appointment, rule = _current(old, appointments, rules)
        people = await store.people(tx, old.location_id, [appointment.contact_id])
        plan = Plan()
        add_rows(plan, appointment, [_wanted(old, rule, now)], {}, people, now)
        [row] = plan.insert
        row.update(resend_of=old.id, requested_by=f"token:{principal.token_id}", requested_at=now)
        due = store.write(tx, plan, now)
    return str(row["id"]), due


def _check_status(old: Any) -> None:
    if old.channel == WEBHOOK:
        raise Conflict(
            f"Delivery {old.id} is a webhook event: webhooks are retried by the dispatcher "
            "until the endpoint accepts them or refuses them for good, and never resent by hand"
        )
    if old.status == DeliveryStatus.SENT:
        raise Conflict(
            f"Delivery {old.id} was sent: a sent delivery is never resent "
            "(it may be resent only when it failed or was skipped)"
        )
    if old.status not in RESENDABLE:
        raise Conflict(
            f"Delivery {old.id} is {old.status}: only a failed or skipped delivery can be resent"
        )


def _current(old: Any, appointments: list[Any], rules: list[Any]) -> tuple[Any, Any]:
    """The appointment and the rule a resend is planned from; 409 when either is gone."""
    if not appointments or appointments[0].deleted:
        raise Conflict(f"Delivery {old.id} cannot be resent: its appointment was deleted")
    if not rules or rules[0].deleted:
        raise Conflict(f"Delivery {old.id} cannot be resent: its rule was deleted")
    if not rules[0].is_active:
        raise Conflict(f"Delivery {old.id} cannot be resent: its rule is inactive")
    return row_of(appointments[0]), rules[0]


def _wanted(old: Any, rule: Any, now: datetime) -> Wanted:
    """The delivery wanted again: to the same recipient, due now, under a key of its own
    (the old one's stays with the old delivery)."""
    raw = f"resend\x1f{old.id}\x1f{new_id()}"
    key = hashlib.sha256(raw.encode("utf-8")).hexdigest()
    ref = RecipientRef(RecipientKind(old.recipient_kind), old.recipient_ref)
    return Wanted(rule, Trigger(old.trigger), now, now + DEADLINE, ref, key)
