"""``calnotify users`` and ``calnotify tokens``: who works in a location, and with which
tokens."""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from calnotify.auth.scopes import ALL_SCOPES
from calnotify.cli.common import AddCommand, CommandError, admin, iso, require_location


def add_commands(commands: Any, add: AddCommand) -> None:
    """``users create|list`` and ``tokens create|list|revoke``."""
    _add_users(commands, add)
    _add_tokens(commands, add)


def _add_users(commands: Any, add: AddCommand) -> None:
    users = add(commands, "users", help="manage users", description="Manage users.")
    user_commands = users.add_subparsers(title="commands", metavar="COMMAND", required=True)
    user_create = add(
        user_commands,
        "create",
        help="create a user of a location and print it as JSON",
        description="Create a user of a location and print it as JSON (with its id).",
    )
    user_create.add_argument("--location", required=True, metavar="ID", help="location id")
    user_create.add_argument("--email", required=True)
    user_create.add_argument("--first-name", default="")
    user_create.add_argument("--last-name", default="")
    user_create.add_argument(
        "--phone",
        default="",
        help="e.g. +14155550100 or +1 (415) 555-0100; without +, a number of the "
        "location's country",
    )
    user_create.add_argument("--role", choices=["admin", "user"], default="user")
    user_create.set_defaults(handler=admin(_create_user))
    user_list = add(
        user_commands,
        "list",
        help="list the users of a location as JSON",
        description="List the users of a location as JSON.",
    )
    user_list.add_argument("--location", required=True, metavar="ID", help="location id")
    user_list.set_defaults(handler=admin(_list_users))


def _add_tokens(commands: Any, add: AddCommand) -> None:
    tokens = add(
        commands, "tokens", help="manage API tokens", description="Manage location access tokens."
    )
    token_commands = tokens.add_subparsers(title="commands", metavar="COMMAND", required=True)
    token_create = add(
        token_commands,
        "create",
        help="issue a token for a location, or an operator token, and print it once",
        description="Issue a location access token (--location), or an operator token "
        "(--operator: the console of every location, its deployment health and provider "
        "checks; refused by the API). The token is printed once and stored hashed. Without "
        "--scope a location token gets every scope.",
    )
    whose = token_create.add_mutually_exclusive_group(required=True)
    whose.add_argument("--location", metavar="ID", help="location id")
    whose.add_argument(
        "--operator", action="store_true", help="a token for the people who run the deployment"
    )
    token_create.add_argument(
        "--scope",
        action="append",
        metavar="S",
        choices=ALL_SCOPES,
        help=f"a scope to grant (repeatable); one of: {', '.join(ALL_SCOPES)}",
    )
    token_create.set_defaults(handler=admin(_create_token))
    token_revoke = add(
        token_commands,
        "revoke",
        help="revoke a token by its id",
        description="Revoke a token by its id; within a second every process refuses it "
        "and ends its open inbox streams.",
    )
    token_revoke.add_argument("token_id", metavar="TOKEN_ID")
    token_revoke.set_defaults(handler=admin(_revoke_token))
    token_list = add(
        token_commands,
        "list",
        help="list the tokens of a location, or the operator tokens (never their secrets)",
        description="List the tokens of a location (--location), or the operator tokens "
        "(--operator), as JSON: id, scopes, when created and revoked. The secret itself is "
        "never stored, so it cannot be shown.",
    )
    listed = token_list.add_mutually_exclusive_group(required=True)
    listed.add_argument("--location", metavar="ID", help="location id")
    listed.add_argument("--operator", action="store_true", help="the operator tokens")
    token_list.set_defaults(handler=admin(_list_tokens))


async def _create_user(args: argparse.Namespace, session: Any) -> dict[str, Any]:
    from calnotify.channels.addresses import AddressError, normalise_number
    from calnotify.models import Location
    from calnotify.users.service import create_user, user_dict

    number = args.phone
    location = await session.get(Location, args.location)
    if number and location is not None:
        # A number that cannot be read is refused below with the user's other fields.
        with contextlib.suppress(AddressError):
            number = normalise_number(number, location.country)
    user = await create_user(
        session,
        location_id=args.location,
        email=args.email,
        first_name=args.first_name,
        last_name=args.last_name,
        phone=number,
        role=args.role,
    )
    return user_dict(user)


async def _list_users(args: argparse.Namespace, session: Any) -> list[dict[str, object]]:
    from calnotify.auth.tokens import Principal
    from calnotify.users.service import list_users, user_dict

    await require_location(session, args.location)
    principal = Principal(token_id="", location_id=args.location, scopes=frozenset())
    return [user_dict(user) for user in await list_users(session, principal, args.location)]


async def _create_token(args: argparse.Namespace, session: Any) -> dict[str, Any]:
    from calnotify.auth.tokens import issue_operator_token, issue_token

    if args.operator:
        if args.scope:
            raise CommandError("an operator token has every scope: leave out --scope")
        issued = await issue_operator_token(session)
        return {"id": issued.id, "token": issued.token, "operator": True, "scopes": issued.scopes}
    issued = await issue_token(session, args.location, args.scope)
    return {
        "id": issued.id,
        "token": issued.token,
        "locationId": issued.location_id,
        "scopes": issued.scopes,
    }


async def _revoke_token(args: argparse.Namespace, session: Any) -> dict[str, Any]:
    from calnotify.auth.tokens import revoke_token

    await revoke_token(session, args.token_id)
    return {"id": args.token_id, "revoked": True}


async def _list_tokens(args: argparse.Namespace, session: Any) -> list[dict[str, object]]:
    from calnotify.auth.tokens import list_tokens

    if not args.operator:
        await require_location(session, args.location)
    return [
        {
            "id": token.id,
            **({"operator": True} if token.operator else {"locationId": token.location_id}),
            "scopes": token.scopes,
            "createdAt": iso(token.date_added),
            "revokedAt": iso(token.revoked_at) if token.revoked_at else None,
        }
        for token in await list_tokens(session, None if args.operator else args.location)
    ]
