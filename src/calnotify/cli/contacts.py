"""``calnotify contacts erase``: erasing a contact and their details from every message."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from calnotify.cli.common import AddCommand, CommandError, on_database
from calnotify.config import Settings
from calnotify.db.engine import Database


def add_commands(commands: Any, add: AddCommand) -> None:
    """``contacts erase``."""
    contacts = add(
        commands,
        "contacts",
        help="erase a contact",
        description="Contacts of the locations.",
    )
    contact_commands = contacts.add_subparsers(title="commands", metavar="COMMAND", required=True)
    erase = add(
        contact_commands,
        "erase",
        help="erase a contact and their details from every message",
        description="Erase a contact, as DELETE /contacts/{contactId} does: pending sends to "
        "them are cancelled (reason contact_deleted); their email address, phone number and "
        "name are replaced by `erased` in every delivery, attempt, outbox message and in-app "
        "notice of their appointments, and in the appointments' text and history; the content "
        "of messages to them is removed; the contact keeps only its id and deleted: true. "
        "Appointments keep their times. The work is done a page of rows per transaction, "
        "while the service runs. Prints how many rows of each kind it changed, as JSON.",
    )
    erase.add_argument("contact_id", metavar="CONTACT_ID", help="the contact's id")
    erase.set_defaults(handler=_erase)


def _erase(args: argparse.Namespace, settings: Settings) -> int:
    from calnotify.contacts.erasure import erase_contact
    from calnotify.errors import NotFound

    async def work(db: Database) -> dict[str, Any]:
        try:
            erased = await erase_contact(db, args.contact_id, datetime.now(UTC))
        except NotFound:
            raise CommandError(f"no contact {args.contact_id}") from None
        return {"id": args.contact_id, "deleted": True, "erased": erased.counts()}

    print(json.dumps(on_database(settings, work), indent=2))
    return 0
