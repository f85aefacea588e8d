"""``calnotify secrets rotate``: a new secret for the recipients' action links."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from calnotify.cli.common import AddCommand, on_database
from calnotify.config import Settings
from calnotify.db.engine import Database


def add_commands(commands: Any, add: AddCommand) -> None:
    """``secrets rotate``."""
    group = add(
        commands,
        "secrets",
        help="rotate the secret that signs action links",
        description="The server secret that signs the links of confirmation_link, "
        "cancellation_link and reschedule_link (docs/semantics.md §8).",
    )
    secret_commands = group.add_subparsers(title="commands", metavar="COMMAND", required=True)
    rotate = add(
        secret_commands,
        "rotate",
        help="sign new links with a new secret; old links keep working for a grace period",
        description="Make a new secret for action links. Messages sent from now on carry "
        "links signed with it; links signed with the previous secret keep working for "
        "CALNOTIFY_LINK_SECRET_GRACE_DAYS (default 30), then open a 404 page. Running "
        "processes start using the new secret within a minute. Prints the new secret's id "
        "and until when the previous links work, as JSON.",
    )
    rotate.set_defaults(handler=_rotate)


def _rotate(_args: argparse.Namespace, settings: Settings) -> int:
    from calnotify.actions.keys import rotate

    now = datetime.now(UTC)
    grace = timedelta(days=settings.link_secret_grace_days)

    async def work(db: Database) -> dict[str, Any]:
        key_id = await rotate(db, now)
        return {"id": key_id, "previousLinksValidUntil": (now + grace).isoformat()}

    print(json.dumps(on_database(settings, work), indent=2))
    return 0
