"""Rendering a notification for one recipient, from the data as it is at send time."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from liquid.exceptions import LiquidError

from calnotify.models import Appointment, Calendar, Contact, Location, Notification, User
from calnotify.templates.defaults import DEFAULTS
from calnotify.templates.liquid import parse

MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class RenderError(Exception):
    """A template could not be rendered (a limit was hit); the delivery fails for good."""


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    body: str
    html: str


@dataclass(frozen=True, slots=True)
class RenderData:
    appointment: Appointment
    calendar: Calendar
    location: Location
    contact: Contact | None
    user: User | None  # the assigned user


def only_date(when: datetime) -> str:
    return f"{MONTHS[when.month - 1]} {when.day}, {when.year}"


def only_time(when: datetime) -> str:
    hour = when.hour % 12 or 12
    return f"{hour}:{when.minute:02d} {'AM' if when.hour < 12 else 'PM'}"


def long_time(when: datetime) -> str:
    return f"{DAYS[when.weekday()]}, {only_date(when)} {only_time(when)}"


def context(data: RenderData, where: ZoneInfo) -> dict[str, Any]:
    """The merge fields (see :mod:`calnotify.templates.merge_fields`), shown in ``where``."""
    a, c, u, loc = data.appointment, data.contact, data.user, data.location
    start, end = a.start_at.astimezone(where), a.end_at.astimezone(where)
    full_address = ", ".join(
        p
        for p in (loc.address, loc.city, f"{loc.state} {loc.postal_code}".strip(), loc.country)
        if p
    )
    return {
        "contact": {
            "id": c.id if c else "",
            "first_name": c.first_name if c else "",
            "last_name": c.last_name if c else "",
            "name": c.name if c else "",
            "full_name": c.name if c else "",
            "email": c.email if c else "",
            "phone": c.phone if c else "",
            "timezone": c.timezone if c else "",
            "company_name": c.company_name if c else "",
            "address1": c.address1 if c else "",
            "city": c.city if c else "",
            "state": c.state if c else "",
            "country": c.country if c else "",
            "postal_code": c.postal_code if c else "",
        },
        "user": {
            "id": u.id if u else "",
            "first_name": u.first_name if u else "",
            "last_name": u.last_name if u else "",
            "name": u.name if u else "",
            "email": u.email if u else "",
            "phone": u.phone if u else "",
        },
        "appointment": {
            "id": a.id,
            "title": a.title or data.calendar.name,
            "status": a.status,
            "start_time": long_time(start),
            "only_start_date": only_date(start),
            "only_start_time": only_time(start),
            "end_time": long_time(end),
            "only_end_date": only_date(end),
            "only_end_time": only_time(end),
            "day_of_week": DAYS[start.weekday()],
            "month": MONTHS[start.month - 1],
            "timezone": where.key,
            "time_zone": where.key,
            "meeting_location": a.address,
            "notes": a.notes or a.description,
            "cancellation_link": "",
            "reschedule_link": "",
        },
        "calendar": {"id": data.calendar.id, "name": data.calendar.name},
        "location": {
            "id": loc.id,
            "name": loc.name,
            "email": loc.email,
            "phone": loc.phone,
            "address": loc.address,
            "full_address": full_address,
            "city": loc.city,
            "state": loc.state,
            "country": loc.country,
            "postal_code": loc.postal_code,
            "website": loc.website,
            "timezone": loc.timezone,
        },
    }


def render_notification(
    notification: Notification,
    template: tuple[str, str] | None,
    data: RenderData,
    where: ZoneInfo,
    *,
    for_customer: bool,
) -> Rendered:
    """Subject, plain body and HTML body for one recipient.

    ``template`` is a stored template's (subject, body-or-html), used when the notification
    names one; else the notification's own subject/body; else the built-in default.
    """
    default = DEFAULTS[notification.notification_type]
    if template is not None:
        subject_source, body_source = template
    else:
        subject_source, body_source = notification.subject, notification.body
    if not body_source:
        body_source = default.customer if for_customer else default.team
    if not subject_source:
        subject_source = default.subject
    values = context(data, where)
    subject = _render(subject_source, values)
    subject = " ".join(subject.split())  # never a line break in a subject
    if _looks_like_html(body_source):
        body = _render(body_source, values, html=True)
        return Rendered(subject=subject, body=html_to_text(body), html=body)
    body = _render(body_source, values)
    return Rendered(subject=subject, body=body, html=text_to_html(body))


def _render(source: str, values: dict[str, Any], *, html: bool = False) -> str:
    try:
        return str(parse(source, html=html).render(**values))
    except (LiquidError, RecursionError, MemoryError) as exc:
        raise RenderError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc


_TAG = re.compile(r"<[a-zA-Z/!][^>]*>")


def _looks_like_html(text: str) -> bool:
    return _TAG.search(text) is not None


def text_to_html(text: str) -> str:
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p]
    return (
        "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs)
        or "<p></p>"
    )


def html_to_text(markup: str) -> str:
    text = re.sub(r"(?is)<(script|style)\b.*?</\1>", "", markup)
    text = re.sub(r"(?i)<br\s*/?>", "\n", text)
    text = re.sub(r"(?i)</(p|div|h[1-6]|li|tr)>", "\n", text)
    text = _TAG.sub("", text)
    text = html.unescape(text)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return "\n".join(line for line in lines if line).strip()
