"""``calnotify senders``: the addresses and numbers a location may send from."""

from __future__ import annotations

import argparse
from typing import Any

from calnotify.cli.common import AddCommand, CommandError, admin, iso, require_location


def add_commands(commands: Any, add: AddCommand) -> None:
    """``senders add|remove|list``."""
    senders = add(
        commands,
        "senders",
        help="manage the addresses and numbers a location may send from",
        description="Manage a location's allowed senders. Email goes out from "
        "CALNOTIFY_EMAIL_FROM's address unless a rule's fromAddress is allowed here (else it "
        "becomes the Reply-To); SMS and WhatsApp from the configured Twilio numbers unless a "
        "rule's fromNumber is allowed here. Allow only addresses of domains whose SPF/DKIM "
        "let your SMTP server send for them, and numbers of your Twilio account.",
    )
    sender_commands = senders.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for action, handler, verb in (
        ("add", _add_sender, "allow"),
        ("remove", _remove_sender, "stop allowing"),
    ):
        sender = add(
            sender_commands,
            action,
            help=f"{verb} an email address or number for a location",
            description=f"{verb.capitalize()} an email address or a phone number as a sender "
            "of a location; prints it as JSON. Addresses match whatever their case; numbers "
            "whatever their form (+1 (415) 555-0100 is +14155550100, and so is 1-415-555-0100 "
            "in a location whose country is US).",
        )
        sender.add_argument("--location", required=True, metavar="ID", help="location id")
        which = sender.add_mutually_exclusive_group(required=True)
        which.add_argument("--email", metavar="ADDR", help="an email address")
        which.add_argument(
            "--number",
            metavar="NUMBER",
            help="a phone number, e.g. +14155550100; without +, a number of the location's country",
        )
        sender.set_defaults(handler=admin(handler))
    sender_list = add(
        sender_commands,
        "list",
        help="list the allowed senders of a location as JSON",
        description="List the allowed senders of a location as JSON.",
    )
    sender_list.add_argument("--location", required=True, metavar="ID", help="location id")
    sender_list.set_defaults(handler=admin(_list_senders))


def _sender_value(args: argparse.Namespace, country: str) -> tuple[str, str, str]:
    """(kind, value as stored, value as compared) of ``--email`` / ``--number``."""
    from calnotify.channels.addresses import AddressError, normalise_email
    from calnotify.channels.senders import EMAIL, NUMBER, sender_key

    try:
        if args.email is not None:
            return EMAIL, normalise_email(args.email), sender_key(EMAIL, args.email)
        number = sender_key(NUMBER, args.number, country)
        return NUMBER, number, number
    except AddressError as exc:
        option = "--email" if args.email is not None else "--number"
        raise CommandError(f"{option}: {exc}") from None


def _sender_dict(sender: Any) -> dict[str, object]:
    return {
        "id": sender.id,
        "locationId": sender.location_id,
        "kind": sender.kind,
        "value": sender.value,
        "createdAt": iso(sender.created_at),
    }


async def _find_sender(session: Any, location_id: str, kind: str, key: str) -> Any:
    """The allowed sender of the location that ``key`` matches (see
    :func:`calnotify.channels.senders.sender_key`), or None."""
    from sqlalchemy import select

    from calnotify.channels.senders import EMAIL
    from calnotify.models import AllowedSender

    rows = await session.scalars(
        select(AllowedSender).where(
            AllowedSender.location_id == location_id, AllowedSender.kind == kind
        )
    )
    # Stored values are normalised: only an email's case can differ.
    for sender in rows:
        if (sender.value.lower() if kind == EMAIL else sender.value) == key:
            return sender
    return None


async def _add_sender(args: argparse.Namespace, session: Any) -> dict[str, object]:
    """Idempotent: adding an allowed sender again prints the one there is."""
    from calnotify.models import AllowedSender

    location = await require_location(session, args.location)
    kind, value, key = _sender_value(args, location.country)
    sender = await _find_sender(session, args.location, kind, key)
    if sender is None:
        sender = AllowedSender(location_id=args.location, kind=kind, value=value)
        session.add(sender)
        await session.flush()
    return _sender_dict(sender)


async def _remove_sender(args: argparse.Namespace, session: Any) -> dict[str, object]:
    location = await require_location(session, args.location)
    kind, value, key = _sender_value(args, location.country)
    sender = await _find_sender(session, args.location, kind, key)
    if sender is None:
        raise CommandError(
            f"{value} is not an allowed sender of location {args.location} "
            f"(`calnotify senders list --location {args.location}` shows them)"
        )
    shown = _sender_dict(sender)
    await session.delete(sender)
    return {**shown, "removed": True}


async def _list_senders(args: argparse.Namespace, session: Any) -> list[dict[str, object]]:
    from sqlalchemy import select

    from calnotify.models import AllowedSender

    await require_location(session, args.location)
    rows = await session.scalars(
        select(AllowedSender)
        .where(AllowedSender.location_id == args.location)
        .order_by(AllowedSender.kind, AllowedSender.value)
    )
    return [_sender_dict(sender) for sender in rows]
