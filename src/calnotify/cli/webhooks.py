"""``calnotify webhooks``: a location's outbound webhooks (docs/semantics.md §8)."""

from __future__ import annotations

import argparse
from typing import Any

from calnotify.cli.common import AddCommand, CommandError, admin, require_location
from calnotify.hooks.events import ALL_EVENTS


def add_commands(commands: Any, add: AddCommand) -> None:
    """``webhooks add|list|remove|rotate``."""
    webhooks = add(
        commands,
        "webhooks",
        help="manage the URLs a location's events are POSTed to",
        description="Manage a location's outbound webhooks: AppointmentCreate, "
        "AppointmentUpdate, AppointmentDelete and InboundMessage events POSTed as JSON, "
        "signed per Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature).",
    )
    hook_commands = webhooks.add_subparsers(title="commands", metavar="COMMAND", required=True)
    hook_add = add(
        hook_commands,
        "add",
        help="add a webhook URL to a location; prints it with its secret, shown once",
        description="Add a webhook to a location. Prints its id, url, events and signing "
        "secret (whsec_…) as JSON; the secret is not shown again. The URL is https (http "
        "only for localhost) and, unless CALNOTIFY_WEBHOOK_ALLOW_PRIVATE is set, must lead "
        "to a public address.",
    )
    hook_add.add_argument("--location", required=True, metavar="ID", help="location id")
    hook_add.add_argument("--url", required=True, metavar="URL", help="where to POST events")
    hook_add.add_argument(
        "--event",
        action="append",
        choices=ALL_EVENTS,
        metavar="TYPE",
        help=f"an event type to send, repeatable ({', '.join(ALL_EVENTS)}); default: all four",
    )
    hook_add.set_defaults(handler=admin(_add))
    hook_list = add(
        hook_commands,
        "list",
        help="list webhooks as JSON (without their secrets)",
        description="List the webhooks of a location (or of every location) as JSON.",
    )
    hook_list.add_argument("--location", metavar="ID", help="location id (default: all)")
    hook_list.set_defaults(handler=admin(_list))
    hook_remove = add(
        hook_commands,
        "remove",
        help="remove a webhook",
        description="Remove a webhook; what is still to be sent to it is skipped.",
    )
    hook_remove.add_argument("id", metavar="ID", help="webhook id")
    hook_remove.set_defaults(handler=admin(_remove))
    hook_rotate = add(
        hook_commands,
        "rotate",
        help="give a webhook a new signing secret; prints it, shown once",
        description="Give a webhook a new signing secret (whsec_…), printed as JSON with "
        "the webhook and not shown again. For 24 hours (previousSecretUntil) each request is "
        "signed with the old secret too, so the receiver can switch without losing events.",
    )
    hook_rotate.add_argument("id", metavar="ID", help="webhook id")
    hook_rotate.set_defaults(handler=admin(_rotate))


async def _add(args: argparse.Namespace, session: Any) -> dict[str, Any]:
    from calnotify.config import get_settings
    from calnotify.hooks import service

    await require_location(session, args.location)
    endpoint = await service.add_endpoint(
        session,
        args.location,
        args.url,
        args.event,
        allow_private=get_settings().webhook_allow_private,
    )
    return service.to_wire(endpoint, secret=True)


async def _list(args: argparse.Namespace, session: Any) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from calnotify.hooks import service
    from calnotify.models import WebhookEndpoint

    if args.location is not None:
        await require_location(session, args.location)
        rows = await service.list_endpoints(session, args.location)
    else:
        query = select(WebhookEndpoint).order_by(
            WebhookEndpoint.location_id, WebhookEndpoint.created_at, WebhookEndpoint.id
        )
        rows = list(await session.scalars(query))
    return [service.to_wire(row) for row in rows]


async def _remove(args: argparse.Namespace, session: Any) -> dict[str, Any]:
    from calnotify.hooks import service
    from calnotify.models import WebhookEndpoint

    endpoint = await session.get(WebhookEndpoint, args.id)
    if endpoint is None:
        raise CommandError(f"no webhook {args.id} (`calnotify webhooks list` shows them)")
    await service.remove_endpoint(session, endpoint.location_id, endpoint.id)
    return {**service.to_wire(endpoint), "removed": True}


async def _rotate(args: argparse.Namespace, session: Any) -> dict[str, Any]:
    from datetime import UTC, datetime

    from calnotify.hooks import service
    from calnotify.models import WebhookEndpoint

    endpoint = await session.get(WebhookEndpoint, args.id)
    if endpoint is None:
        raise CommandError(f"no webhook {args.id} (`calnotify webhooks list` shows them)")
    rotated = await service.rotate_secret(
        session, endpoint.location_id, endpoint.id, datetime.now(UTC)
    )
    return service.to_wire(rotated, secret=True)
