"""Built-in texts, used when a notification has neither a ``templateId`` nor a ``body``.

Two audiences: the people the appointment is for (contact, guests, extra addresses) and
the team (assigned user, business users, in-app).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DefaultText:
    subject: str
    customer: str
    team: str


WHEN = "{{appointment.start_time}} ({{appointment.timezone}})"

DEFAULTS: dict[str, DefaultText] = {
    "booked": DefaultText(
        subject="Appointment booked: {{calendar.name}}",
        customer="Hi {{contact.first_name}}, your appointment with {{location.name}} is booked "
        f"for {WHEN}.",
        team=f"New appointment with {{{{contact.name}}}} on {WHEN}.",
    ),
    "confirmation": DefaultText(
        subject="Appointment confirmed: {{calendar.name}}",
        customer="Hi {{contact.first_name}}, your appointment with {{location.name}} on "
        f"{WHEN} is confirmed.",
        team=f"Appointment with {{{{contact.name}}}} on {WHEN} is confirmed.",
    ),
    "cancellation": DefaultText(
        subject="Appointment cancelled: {{calendar.name}}",
        customer="Hi {{contact.first_name}}, your appointment with {{location.name}} on "
        f"{WHEN} has been cancelled.",
        team=f"Appointment with {{{{contact.name}}}} on {WHEN} has been cancelled.",
    ),
    "reschedule": DefaultText(
        subject="Appointment rescheduled: {{calendar.name}}",
        customer="Hi {{contact.first_name}}, your appointment with {{location.name}} has moved "
        f"to {WHEN}.",
        team=f"Appointment with {{{{contact.name}}}} has moved to {WHEN}.",
    ),
    "reminder": DefaultText(
        subject="Reminder: {{calendar.name}} on {{appointment.only_start_date}}",
        customer="Hi {{contact.first_name}}, a reminder of your appointment with "
        f"{{{{location.name}}}} on {WHEN}.",
        team=f"Reminder: appointment with {{{{contact.name}}}} on {WHEN}.",
    ),
    "followup": DefaultText(
        subject="Thank you for visiting {{location.name}}",
        customer="Hi {{contact.first_name}}, thank you for your appointment with "
        "{{location.name}}. We hope to see you again soon.",
        team="Follow up with {{contact.name}} about the appointment on "
        "{{appointment.only_start_date}}.",
    ),
}
