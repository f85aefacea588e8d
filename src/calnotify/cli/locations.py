"""``calnotify locations``: the tenants."""

from __future__ import annotations

import argparse
from typing import Any

from calnotify.cli.common import AddCommand, CommandError, admin, phone, require_location, warn

_PHONE_HELP = (
    "e.g. +14155550100 or +1 (415) 555-0100; without +, a number of the location's country"
)
_ZONE_HELP = "IANA zone, e.g. America/New_York"
_COUNTRY_HELP = "ISO 3166 alpha-2 code, e.g. US: the country numbers without + are read in"


def add_commands(commands: Any, add: AddCommand) -> None:
    """``locations create|list|update|delete``."""
    locations = add(
        commands,
        "locations",
        help="manage locations",
        description="Manage locations (sub-accounts).",
    )
    loc_commands = locations.add_subparsers(title="commands", metavar="COMMAND", required=True)
    create = add(
        loc_commands,
        "create",
        help="create a location and print it as JSON",
        description="Create a location and print it as JSON (with its id).",
    )
    create.add_argument("--name", required=True)
    create.add_argument("--email", default="", help="the business email")
    create.add_argument("--phone", default="", help=_PHONE_HELP)
    create.add_argument("--timezone", default="UTC", help=f"{_ZONE_HELP} (default UTC)")
    create.add_argument("--country", default="", help=_COUNTRY_HELP)
    create.set_defaults(handler=admin(_create_location))
    listed = add(
        loc_commands,
        "list",
        help="list every location as JSON",
        description="List every location as JSON.",
    )
    listed.set_defaults(handler=admin(_list_locations))
    _add_update_and_delete(loc_commands, add)


def _add_update_and_delete(loc_commands: Any, add: AddCommand) -> None:
    update = add(
        loc_commands,
        "update",
        help="change a location's name, email, phone, time zone, country or reply settings",
        description="Change the fields given (an empty value clears the email or phone) "
        "and print the location as JSON.",
    )
    update.add_argument("location_id", metavar="LOCATION_ID")
    update.add_argument("--name")
    update.add_argument("--email", help="the business email")
    update.add_argument("--phone", help=_PHONE_HELP)
    update.add_argument("--timezone", help=_ZONE_HELP)
    update.add_argument("--country", help=_COUNTRY_HELP)
    update.add_argument(
        "--confirm-keywords",
        metavar="WORDS",
        help="the replies by SMS or WhatsApp that confirm an appointment, separated by commas "
        "(default C,CONFIRM,Y,YES; an empty value restores it)",
    )
    update.add_argument(
        "--reply-help",
        metavar="TEXT",
        help="the answer to a HELP reply (default: the location's name and phone; an empty "
        "value restores it)",
    )
    update.set_defaults(handler=admin(_update_location))
    remove = add(
        loc_commands,
        "delete",
        help="delete a location and everything of it",
        description="Delete a location with its users, tokens, contacts, templates and "
        "allowed senders. A location that has calendars, appointments or deliveries is "
        "deleted only with --force, which removes them too. Prints what was removed, "
        "how many of each kind.",
    )
    remove.add_argument("location_id", metavar="LOCATION_ID")
    remove.add_argument(
        "--force",
        action="store_true",
        help="delete it even with calendars, appointments or deliveries (removed with it)",
    )
    remove.set_defaults(handler=admin(_delete_location))


async def _create_location(args: argparse.Namespace, session: Any) -> dict[str, Any]:
    from calnotify.locations.service import create_location, location_dict

    country = args.country.strip().upper()
    location = await create_location(
        session,
        name=args.name,
        email=args.email,
        phone=phone(args.phone, country, "--phone") if args.phone else "",
        timezone=args.timezone,
        country=country,
    )
    _warn_of_zone(location.timezone)
    return location_dict(location)


async def _list_locations(_args: argparse.Namespace, session: Any) -> list[dict[str, object]]:
    from sqlalchemy import select

    from calnotify.locations.service import location_dict
    from calnotify.models import Location

    rows = await session.scalars(select(Location).order_by(Location.date_added, Location.id))
    return [location_dict(location) for location in rows]


async def _update_location(args: argparse.Namespace, session: Any) -> dict[str, Any]:
    from calnotify.auth.tokens import Principal
    from calnotify.locations.schemas import LocationUpdate
    from calnotify.locations.service import update_location

    fields = ("name", "email", "phone", "timezone", "country")
    changes = {name: getattr(args, name) for name in fields if getattr(args, name) is not None}
    if not changes and args.confirm_keywords is None and args.reply_help is None:
        raise CommandError(
            "nothing to change: give at least one of --name, --email, --phone, --timezone, "
            "--country, --confirm-keywords, --reply-help"
        )
    location = await require_location(session, args.location_id)
    _set_replies(location, args.confirm_keywords, args.reply_help)
    if "country" in changes:
        changes["country"] = changes["country"].strip().upper()
    if changes.get("phone"):
        country = changes.get("country", location.country)
        changes["phone"] = phone(changes["phone"], country, "--phone")
    principal = Principal(token_id="", location_id=location.id, scopes=frozenset())
    body = LocationUpdate.model_validate(changes)
    location = await update_location(session, principal, location.id, body)
    if "timezone" in changes:
        _warn_of_zone(location.timezone)
    return _with_replies(location)


def _set_replies(location: Any, confirm_keywords: str | None, reply_help: str | None) -> None:
    """The location's reply settings, as given (None: unchanged)."""
    from calnotify.replies.keywords import DEFAULT_CONFIRM, KeywordError, parse_keywords

    if confirm_keywords is not None:
        try:
            words = parse_keywords(confirm_keywords)
        except KeywordError as exc:
            raise CommandError(f"--confirm-keywords: {exc}") from None
        location.reply_confirm_keywords = "" if words == DEFAULT_CONFIRM else ",".join(words)
        if len(location.reply_confirm_keywords) > 255:
            raise CommandError("--confirm-keywords: at most 255 characters in all")
    if reply_help is not None:
        if len(reply_help.strip()) > 320:
            raise CommandError("--reply-help: at most 320 characters")
        location.reply_help = reply_help.strip()


def _with_replies(location: Any) -> dict[str, Any]:
    """The location as JSON, with its reply settings (``replies``)."""
    from calnotify.locations.service import location_dict
    from calnotify.replies.keywords import confirm_keywords, help_text

    replies = {"confirmKeywords": list(confirm_keywords(location)), "help": help_text(location)}
    return {**location_dict(location), "replies": replies}


async def _delete_location(args: argparse.Namespace, session: Any) -> dict[str, Any]:
    from calnotify.locations.removal import GUARDED, delete_location, location_contents

    location = await require_location(session, args.location_id)
    contents = await location_contents(session, location.id)
    held = [_count(contents[kind], kind) for kind in GUARDED if contents[kind]]
    if held and not args.force:
        raise CommandError(
            f"location {location.id} ({location.name}) has {_listed(held)}: "
            f"`calnotify locations delete {location.id} --force` deletes them with it"
        )
    await delete_location(session, location.id)
    return {
        "id": location.id,
        "name": location.name,
        "deleted": True,
        "removed": {kind: count for kind, count in contents.items() if count},
    }


def _warn_of_zone(name: str) -> None:
    from calnotify.zones import zone_warning

    if problem := zone_warning(name):
        warn(f"--timezone: {problem}")


_ONE = {"calendars": "calendar", "appointments": "appointment", "deliveries": "delivery"}


def _count(count: int, kind: str) -> str:
    return f"{count} {_ONE[kind] if count == 1 else kind}"


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
