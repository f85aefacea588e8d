"""The planner: what should be sent for an appointment, worked out as rows.

Everything here is pure: given an appointment, the rules of its calendar, the people its
messages go to and the deliveries it has, it says which deliveries are wanted and what
to write for them (a :class:`Plan`). :mod:`calnotify.planning.store` reads what the planner
needs and writes its plans, in the transaction of the change that causes them (an
appointment booked or changed, a rule created, edited or deleted), so a committed change
always has its deliveries and a rolled-back one has none.

Reconciling the wanted deliveries with the stored ones:

- wanted and stored (still pending): kept, and re-stamped with the current version of what
  changed, so the dispatcher's fence lets it through;
- stored but no longer wanted: ``cancelled``, with the cause in ``reason``;
- wanted but not stored: inserted (``skipped`` at once when it is already late, or its
  recipient is on DND or has no address). A dedupe key per (rule, appointment, due instant
  or triggering event, recipient) makes re-planning idempotent: a key that exists is never
  inserted twice, and only a ``cancelled`` row is brought back.

Deliveries already claimed by a worker (``sending``) that a change voided are left to the
fence: their old version stamps make the dispatcher skip them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from calnotify.deliveries.states import DeliveryStatus, Reason, planned
from calnotify.ids import instance_id, new_id
from calnotify.models.appointment import AppointmentEventKind, AppointmentStatus
from calnotify.models.delivery import Trigger
from calnotify.models.notification import NotificationType
from calnotify.notifications.rules import offset_seconds
from calnotify.planning.recipients import People, RecipientRef, Resolved, recipients, resolve

DEADLINE = timedelta(hours=24)
MIN_WINDOW = timedelta(seconds=60)
WAKE_CHANNEL = "calnotify_deliveries"

LIVE = (AppointmentStatus.NEW, AppointmentStatus.CONFIRMED)
ENDED = (AppointmentStatus.CANCELLED, AppointmentStatus.NOSHOW, AppointmentStatus.INVALID)
SCHEDULED_TYPES = (NotificationType.REMINDER, NotificationType.FOLLOWUP)
_SCHEDULED = DeliveryStatus.SCHEDULED.value
_CANCELLED = DeliveryStatus.CANCELLED.value


@dataclass(frozen=True, slots=True)
class Wanted:
    """One delivery the planner wants for an appointment (not yet a row)."""

    notification: Any  # the rule: an ORM Notification or a row of its columns
    trigger: Trigger
    due_at: datetime
    deadline_at: datetime
    recipient: RecipientRef
    key: str
    skip: Reason | None = None  # skipped at once whoever it is for (a booking in the past)


@dataclass
class Plan:
    """What to write for the deliveries of one change (or one page of changes)."""

    #: Pending deliveries to cancel, by reason.
    cancel: dict[str, list[str]] = field(default_factory=dict)
    #: Pending deliveries kept, to re-stamp with the appointment's or the rule's version.
    restamp_appointment: list[tuple[str, int]] = field(default_factory=list)
    restamp_rule: list[tuple[str, int]] = field(default_factory=list)
    #: New rows, and cancelled rows wanted again (their id and new values).
    insert: list[dict[str, Any]] = field(default_factory=list)
    revive: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def extend(self, other: Plan) -> None:
        for reason, ids in other.cancel.items():
            self.cancel.setdefault(reason, []).extend(ids)
        self.restamp_appointment += other.restamp_appointment
        self.restamp_rule += other.restamp_rule
        self.insert += other.insert
        self.revive += other.revive

    @property
    def due(self) -> bool:
        """Whether it plans something to send (a dispatcher should look)."""
        return any(r["status"] == _SCHEDULED for r in self.insert) or any(
            v["status"] == _SCHEDULED for _, v in self.revive
        )


def immediate_types(kind: str, status: str | None) -> list[NotificationType]:
    """What an appointment event sends at once (docs/semantics.md §3), given the status after it."""
    if kind == AppointmentEventKind.CREATED:
        if status == AppointmentStatus.NEW:
            return [NotificationType.BOOKED]
        if status == AppointmentStatus.CONFIRMED:
            return [NotificationType.CONFIRMATION]
    elif kind == AppointmentEventKind.STATUS_CHANGED:
        if status == AppointmentStatus.CONFIRMED:
            return [NotificationType.CONFIRMATION]
        if status in ENDED:
            return [NotificationType.CANCELLATION]
    elif kind == AppointmentEventKind.RESCHEDULED and status in LIVE:
        return [NotificationType.RESCHEDULE]
    return []


#: What an event sends at once: (event id, notification type, why it is skipped at once).
Immediate = tuple[int, NotificationType, Reason | None]


def immediate_sends(events: Iterable[Any]) -> list[Immediate]:
    """What appointment events send at once. A booking of an appointment that has already
    started (``past``: and the request did not ask to notify anyway) plans its ``booked`` or
    ``confirmation`` message ``skipped``/``past``: recorded, never sent as a surprise."""
    return [
        (e.id, kind, Reason.PAST if e.past else None)
        for e in events
        if e.to_notify
        for kind in immediate_types(e.kind, e.status_after)
    ]


def wanted_deliveries(
    appointment: Any,
    rules: Iterable[Any],
    people: People,
    now: datetime,
    immediate: Sequence[Immediate],
) -> dict[str, Wanted]:
    """Every delivery ``rules`` want for ``appointment``, by dedupe key: those sent at once
    for the ``immediate`` sends (see :func:`immediate_sends`), and its reminders and
    follow-ups."""
    if appointment.deleted:
        return {}
    out: dict[str, Wanted] = {}
    for rule in rules:
        if rule.deleted or not rule.is_active:
            continue
        for event_id, kind, skip in immediate:
            if rule.notification_type != kind:
                continue
            for ref in recipients(rule, appointment, people):
                key = _key(rule, appointment.id, f"event:{event_id}", ref)
                out[key] = Wanted(rule, Trigger.EVENT, now, now + DEADLINE, ref, key, skip)
        for due in _scheduled_dues(rule, appointment):
            deadline = due + DEADLINE
            if rule.notification_type == NotificationType.REMINDER:
                # A reminder is never sent once the appointment has started.
                deadline = max(min(deadline, appointment.start_at), due + MIN_WINDOW)
            for ref in recipients(rule, appointment, people):
                key = _key(rule, appointment.id, f"at:{due.isoformat()}", ref)
                out[key] = Wanted(rule, Trigger.SCHEDULE, due, deadline, ref, key)
    return out


def _scheduled_dues(rule: Any, appointment: Any) -> list[datetime]:
    if appointment.rrule and appointment.master_id is None:
        return []  # a series: reminders and follow-ups belong to its occurrences
    dues: set[datetime] = set()
    if rule.notification_type == NotificationType.REMINDER and appointment.status in LIVE:
        dues = {
            appointment.start_at - timedelta(seconds=offset_seconds(e)) for e in rule.before_time
        }
    followup_ok = appointment.status in (*LIVE, AppointmentStatus.SHOWED)
    if rule.notification_type == NotificationType.FOLLOWUP and followup_ok:
        dues = {appointment.end_at + timedelta(seconds=offset_seconds(e)) for e in rule.after_time}
    if appointment.master_id is not None and appointment.planned_until is not None:
        # An occurrence: only what is due within its series' horizon exists as rows.
        dues = {due for due in dues if due <= appointment.planned_until}
    return sorted(dues)


def _key(rule: Any, appointment_id: str, when: str, ref: RecipientRef) -> str:
    # The channel is part of the message: a rule moved from email to SMS plans new ones.
    parts = (rule.id, appointment_id, when, rule.channel, rule.receiver_type, ref.identity)
    raw = "\x1f".join(parts)
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


# --- reconciling -----------------------------------------------------------------------------


def settle(
    plan: Plan,
    appointment: Any,
    rules: dict[str, Any],
    wanted: dict[str, Wanted],
    stored: Sequence[Any],
    *,
    superseding_reschedule: bool,
    moved_by: str,
) -> None:
    """Reconcile ``stored`` (the appointment's pending deliveries) with ``wanted``: into
    ``plan`` go those to keep (re-stamped) and those to cancel; what is wanted and not
    stored stays in ``wanted`` (``moved_by``: ``appointment`` or ``notification``, the
    version to re-stamp and the reason a moved reminder is cancelled with)."""
    new_events = {key for key, w in wanted.items() if w.trigger == Trigger.EVENT}
    for row in stored:
        if row.dedupe_key in new_events:
            reason = None
        else:
            reason = _void_reason(row, appointment, rules, wanted, superseding_reschedule, moved_by)
        if reason is None:
            wanted.pop(row.dedupe_key, None)
            if moved_by == "appointment":
                plan.restamp_appointment.append((row.id, appointment.version))
            else:
                plan.restamp_rule.append((row.id, rules[row.notification_id].version))
        elif row.status == _SCHEDULED:
            plan.cancel.setdefault(reason, []).append(row.id)
        else:
            wanted.pop(row.dedupe_key, None)  # in flight: never a second one


def _void_reason(
    row: Any,
    appointment: Any,
    rules: dict[str, Any],
    wanted: dict[str, Wanted],
    superseding_reschedule: bool,
    moved_by: str,
) -> str | None:
    """Why a stored, still-scheduled delivery must not go out any more (None: keep it)."""
    if appointment.deleted:
        return "appointment_deleted"
    if row.calendar_id != appointment.calendar_id:
        return "calendar_changed"
    rule = rules.get(row.notification_id)
    if rule is None or rule.deleted:
        return "rule_deleted"
    if not rule.is_active:
        return "rule_deactivated"
    if row.trigger == Trigger.SCHEDULE:
        if row.dedupe_key in wanted:
            return None
        if appointment.status not in LIVE and not (
            row.notification_type == NotificationType.FOLLOWUP
            and appointment.status == AppointmentStatus.SHOWED
        ):
            return "appointment_" + str(appointment.status)
        return "rescheduled" if moved_by == "appointment" else "rule_changed"
    if (
        row.channel != rule.channel
        or row.receiver_type != rule.receiver_type
        or row.notification_type != rule.notification_type
    ):
        return "rule_changed"
    if row.notification_type == NotificationType.CANCELLATION:
        return "appointment_restored" if appointment.status in LIVE else None
    if appointment.status not in LIVE:
        return "appointment_" + str(appointment.status)
    if row.notification_type == NotificationType.RESCHEDULE and superseding_reschedule:
        return "superseded"
    return None


def add_rows(
    plan: Plan,
    appointment: Any,
    wanted: Iterable[Wanted],
    existing: dict[str, Any],
    people: People,
    now: datetime,
) -> None:
    """New rows for the wanted deliveries into ``plan``, and the cancelled ones to plan
    anew (``existing``: the stored rows of their keys, by key; never a second message for
    one key: only a cancelled one comes back)."""
    for w in wanted:
        resolved, skip = planned_state(w, appointment, people, now)
        values: dict[str, Any] = {
            **planned(skip),
            "recipient": resolved.address,
            "due_at": w.due_at,
            "run_at": w.due_at,
            "deadline_at": w.deadline_at,
            "appointment_version": appointment.version,
            "notification_version": w.notification.version,
            "updated_at": now,
        }
        row = existing.get(w.key)
        if row is not None:
            if row.status == _CANCELLED:
                plan.revive.append((row.id, values))
            continue
        values["status"] = str(values["status"])
        plan.insert.append(
            {
                **values,
                "id": new_id(),
                "location_id": appointment.location_id,
                "calendar_id": appointment.calendar_id,
                "appointment_id": appointment.id,
                "instance_id": occurrence_id(appointment),
                "master_event_id": appointment.master_id or "",
                "notification_id": w.notification.id,
                "notification_type": w.notification.notification_type,
                "channel": w.notification.channel,
                "receiver_type": w.notification.receiver_type,
                "trigger": w.trigger.value,
                "recipient_kind": w.recipient.kind.value,
                "recipient_ref": w.recipient.ref,
                "dedupe_key": w.key,
                "created_at": now,
            }
        )


def planned_state(
    wanted: Wanted, appointment: Any, people: People, now: datetime
) -> tuple[Resolved, Reason | None]:
    """The recipient's address a wanted delivery is planned with, and why it is skipped at
    once (``None``: it is scheduled)."""
    resolved = resolve(wanted.recipient, wanted.notification.channel, appointment, people)
    skip = resolved.skip or wanted.skip
    if skip is None and wanted.trigger == Trigger.SCHEDULE and wanted.due_at < now:
        skip = Reason.LATE
    return resolved, skip


def occurrence_id(appointment: Any) -> str:
    """An occurrence's instance id ("" for an appointment that is none)."""
    if appointment.master_id and appointment.original_start_at:
        return instance_id(appointment.master_id, appointment.original_start_at)
    return ""
