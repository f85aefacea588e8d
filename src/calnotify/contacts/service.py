"""Contacts of a location."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.api.types import json_problem
from calnotify.api.validators import email_problem, phone_problem, timezone_problem
from calnotify.auth.deps import ensure_location
from calnotify.auth.tokens import Principal
from calnotify.contacts.schemas import ContactCreate, ContactFieldsIn, ContactOut
from calnotify.db.base import utcnow
from calnotify.db.scoped import find_in_location, get_in_location
from calnotify.errors import BadRequest, FieldError
from calnotify.models import Contact

_PLAIN_FIELDS = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "timezone",
    "company_name",
    "address1",
    "city",
    "state",
    "country",
    "postal_code",
    "website",
    "source",
    "dnd",
    "tags",
)


# Text columns a new contact starts with empty; set here rather than left to the insert, so
# an unsaved contact (a preview's) reads like a stored one.
_TEXT_DEFAULTS = (
    "company_name",
    "address1",
    "city",
    "state",
    "country",
    "postal_code",
    "website",
    "source",
)


async def find_contact(
    session: AsyncSession, principal: Principal, contact_id: str | None
) -> Contact | None:
    """The contact if it is of the token's location, deleted or not (what an appointment
    names); None otherwise."""
    return await find_in_location(
        session, Contact, contact_id, principal.location_id, include_deleted=True
    )


async def get_contact(session: AsyncSession, principal: Principal, contact_id: str) -> Contact:
    return await get_in_location(
        session, Contact, contact_id, principal.location_id, what="Contact"
    )


async def create_contact(
    session: AsyncSession, principal: Principal, body: ContactCreate
) -> Contact:
    ensure_location(principal, body.location_id)
    contact = build_contact(body.location_id, body)
    session.add(contact)
    await session.flush()
    return contact


def build_contact(location_id: str, body: ContactFieldsIn) -> Contact:
    """A contact of ``location_id`` made from ``body``, checked as a create checks it (400
    naming the field), and not added to any session."""
    contact = Contact(
        location_id=location_id,
        first_name="",
        last_name="",
        email="",
        phone="",
        timezone="",
        dnd=False,
        dnd_settings={},
        tags=[],
        extra={},
        deleted=False,
        **{name: "" for name in _TEXT_DEFAULTS},
    )
    _apply(contact, body)
    return contact


async def update_contact(
    session: AsyncSession, principal: Principal, contact_id: str, body: ContactFieldsIn
) -> Contact:
    contact = await get_contact(session, principal, contact_id)
    _apply(contact, body)
    contact.date_updated = utcnow()
    await session.flush()
    return contact


def _apply(contact: Contact, body: ContactFieldsIn) -> None:
    given = body.given()
    if "name" in given and "first_name" not in given and "last_name" not in given:
        first, _, last = str(given.pop("name")).strip().partition(" ")
        given["first_name"], given["last_name"] = first, last.strip()
    given.pop("name", None)
    errors: list[FieldError] = []
    if given.get("email") and (problem := email_problem(str(given["email"]))):
        errors.append(FieldError("email", problem))
    if given.get("phone") and (problem := phone_problem(str(given["phone"]))):
        errors.append(FieldError("phone", problem))
    if given.get("timezone") and (problem := timezone_problem(str(given["timezone"]))):
        errors.append(FieldError("timezone", problem))
    echoed = body.echoed()
    for key, value in echoed.items():
        if problem := json_problem(value):
            errors.append(FieldError(key, problem))
    if errors:
        raise BadRequest(errors)
    for name in _PLAIN_FIELDS:
        if name in given:
            setattr(contact, name, given[name])
    if body.dnd_settings is not None:
        contact.dnd_settings = body.dnd_settings.model_dump(by_alias=True, exclude_none=True)
    if echoed:
        contact.extra = {**(contact.extra or {}), **echoed}


def to_out(contact: Contact) -> ContactOut:
    return ContactOut.model_validate(
        {
            **(contact.extra or {}),
            "id": contact.id,
            "name": contact.name,
            "locationId": contact.location_id,
            "firstName": contact.first_name,
            "lastName": contact.last_name,
            "email": contact.email,
            "emailLowerCase": contact.email.lower(),
            "timezone": contact.timezone,
            "companyName": contact.company_name,
            "phone": contact.phone,
            "dnd": contact.dnd,
            "dndSettings": contact.dnd_settings or {},
            "source": contact.source,
            "address1": contact.address1,
            "city": contact.city,
            "state": contact.state,
            "country": contact.country,
            "postalCode": contact.postal_code,
            "website": contact.website,
            "tags": contact.tags or [],
            "firstNameLowerCase": contact.first_name.lower(),
            "lastNameLowerCase": contact.last_name.lower(),
            "fullNameLowerCase": contact.name.lower(),
            "dateAdded": contact.date_added,
            "dateUpdated": contact.date_updated,
        }
    )
