"""HighLevel's Contacts operations (the subset recipients are resolved from)."""

from __future__ import annotations

from fastapi import APIRouter

from calnotify.auth.deps import ContactsRead, ContactsWrite
from calnotify.contacts import service
from calnotify.contacts.erasure import erase_contact
from calnotify.contacts.schemas import (
    ContactCreate,
    ContactEnvelope,
    ContactUpdate,
    ContactUpdated,
    Succeded,
)
from calnotify.deps import ClockDep, DatabaseDep, SessionDep

router = APIRouter(prefix="/contacts", tags=["Contacts"])


@router.post("", response_model=ContactEnvelope, status_code=201, operation_id="create-contact")
async def create_contact(
    body: ContactCreate, principal: ContactsWrite, session: SessionDep
) -> ContactEnvelope:
    contact = await service.create_contact(session, principal, body)
    return ContactEnvelope(contact=service.to_out(contact))


@router.get("/{contactId}", response_model=ContactEnvelope, operation_id="get-contact")
async def get_contact(
    contactId: str, principal: ContactsRead, session: SessionDep
) -> ContactEnvelope:
    return ContactEnvelope(
        contact=service.to_out(await service.get_contact(session, principal, contactId))
    )


@router.put("/{contactId}", response_model=ContactUpdated, operation_id="update-contact")
async def update_contact(
    contactId: str, body: ContactUpdate, principal: ContactsWrite, session: SessionDep
) -> ContactUpdated:
    contact = await service.update_contact(session, principal, contactId, body)
    return ContactUpdated(contact=service.to_out(contact))


@router.delete("/{contactId}", response_model=Succeded, operation_id="delete-contact")
async def delete_contact(
    contactId: str, principal: ContactsWrite, db: DatabaseDep, clock: ClockDep
) -> Succeded:
    """Erase the contact (docs/semantics.md §10): pending sends to them are cancelled, their details
    removed from every message and from the contact, which keeps only its id."""
    await erase_contact(db, contactId, clock.now(), location_id=principal.location_id)
    return Succeded()
