"""A contact's page: their appointments, every message to them, and their do-not-disturb
per channel, which a token with ``contacts.write`` may turn on or off."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import RedirectResponse, Response

from calnotify.appointments import lists, series
from calnotify.auth.scopes import Scope
from calnotify.auth.sessions import Operator
from calnotify.console import words
from calnotify.console.web import (
    PAGE,
    PREFIX,
    ConsoleRoute,
    PageError,
    first,
    last_page,
    page_number,
    read_form,
    render,
    signed_in,
)
from calnotify.contacts import service as contacts
from calnotify.contacts.dnd import switched
from calnotify.contacts.schemas import ContactUpdate
from calnotify.deliveries import service as deliveries
from calnotify.deps import ReadSessionDep, SessionDep
from calnotify.planning.recipients import DND_KEY
from calnotify.timefmt import zone

router = APIRouter(route_class=ConsoleRoute)

MAX_ID = 20
APPOINTMENTS = 100
# Set by the console: the message HighLevel shows beside a DND status.
SET_HERE = "set in the console"
DONE = {"dnd-on": "Do not disturb turned on.", "dnd-off": "Do not disturb turned off."}


def _checked_id(contact_id: str) -> str:
    if len(contact_id) > MAX_ID:
        raise PageError(404, "Not found", "Contact not found")
    return contact_id


def dnd_rows(contact: Any) -> list[dict[str, Any]]:
    """The contact's DND for each channel a message can go by: on, and changeable here."""
    settings: dict[str, Any] = contact.dnd_settings or {}
    rows = []
    for channel, key in DND_KEY.items():
        entry = settings.get(key)
        status = entry.get("status", "") if isinstance(entry, dict) else ""
        message = entry.get("message", "") if isinstance(entry, dict) else ""
        rows.append(
            {
                "channel": channel,
                "name": words.CHANNELS.get(channel, channel),  # type: ignore[call-overload]
                "on": status in ("active", "permanent"),
                "permanent": status == "permanent",
                "message": message,
            }
        )
    return rows


@router.get("/contacts/{contact_id}")
async def contact_page(
    request: Request,
    contact_id: str,
    operator: Annotated[Operator, signed_in(Scope.CONTACTS_READ, Scope.EVENTS_READ)],
    session: ReadSessionDep,
    page: Annotated[str, Query(max_length=12)] = "1",
) -> Response:
    contact = await contacts.get_contact(session, operator.principal, _checked_id(contact_id))
    booked = await lists.of_contact(session, operator.principal, contact.id, APPOINTMENTS)
    number = page_number(page)
    messages, total = await deliveries.list_deliveries(
        session,
        operator.principal,
        {"contact_id": contact.id},
        PAGE,
        (number - 1) * PAGE,
        newest_first=True,
    )
    last = last_page(total, PAGE, number, "messages to this contact")
    return render(
        request,
        "contact.html",
        {
            "contact": contact,
            "appointments": booked,
            "messages": messages,
            "total": total,
            "page": number,
            "pages": last,
            "dnd": dnd_rows(contact),
            "zone": zone(operator.location_zone),
            "words": words,
            "wire_id": series.wire_id,
            "flash": DONE.get(request.query_params.get("done", ""), ""),
        },
        operator=operator,
    )


@router.post("/contacts/{contact_id}/dnd")
async def set_dnd(
    request: Request,
    contact_id: str,
    operator: Annotated[Operator, signed_in(Scope.CONTACTS_WRITE)],
    session: SessionDep,
) -> Response:
    """Turn the contact's DND for one channel on or off (a ``permanent`` one stays)."""
    fields = await read_form(request, operator.csrf)
    channel, on = first(fields, "channel"), first(fields, "on") == "true"
    if channel not in DND_KEY:
        raise PageError(400, "Bad request", "Choose the email, SMS or WhatsApp channel.")
    contact = await contacts.get_contact(session, operator.principal, _checked_id(contact_id))
    changed = switched(contact.dnd_settings, channel, on, SET_HERE)
    if changed is not None:
        body = ContactUpdate.model_validate({"dndSettings": changed})
        await contacts.update_contact(session, operator.principal, contact.id, body)
    return RedirectResponse(
        f"{PREFIX}/contacts/{contact.id}?done={'dnd-on' if on else 'dnd-off'}", status_code=303
    )
