"""What a plan preview shows a token that may not read all it is composed from
(docs/semantics.md §9): the API and the console show a contact's details only with
``contacts.readonly``, users' only with ``users.readonly`` and stored templates only with
``locations/templates.readonly``, and so does a preview.

The plan is made with every row as stored (who is skipped, and why, depends on them);
the messages are then composed from rows whose details are hidden, and the recipients'
addresses hidden in the answer. A contact given in the request itself (or the sample
contact) is the caller's own, and shown.
"""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

from calnotify.auth.scopes import Scope
from calnotify.auth.tokens import Principal
from calnotify.notifications.preview_compose import Sources
from calnotify.notifications.schemas import PreviewDeliveryOut
from calnotify.planning.recipients import People

#: Columns kept of a row whose details are hidden: what a message's zone and its plan
#: read, nothing that tells who it is.
KEPT = frozenset({"id", "location_id", "timezone", "dnd_settings", "role", "deleted"})


def hidden(scope: Scope) -> str:
    """What stands for a value the token may not read."""
    return f"[hidden: needs {scope.value}]"


def scoped_sources(principal: Principal, sources: Sources) -> Sources:
    """``sources`` with what ``principal`` may not read hidden."""
    can = principal.can
    people = sources.people
    contacts = people.contacts
    if not can(Scope.CONTACTS_READ):
        contacts = {
            key: row if row is sources.unsaved_contact else _hidden(row, Scope.CONTACTS_READ)
            for key, row in contacts.items()
        }
    users = people.users
    if not can(Scope.USERS_READ):
        users = {key: _hidden(row, Scope.USERS_READ) for key, row in users.items()}
    templates = sources.templates
    if not can(Scope.TEMPLATES_READ):
        text = hidden(Scope.TEMPLATES_READ)
        templates = {key: (text, text) for key in templates}
    return replace(sources, people=People(people.location, users, contacts), templates=templates)


def scoped_deliveries(
    principal: Principal, deliveries: list[PreviewDeliveryOut]
) -> list[PreviewDeliveryOut]:
    """The answer's deliveries with the addresses ``principal`` may not read hidden: a
    stored contact's (it has an id) without ``contacts.readonly``, a user's without
    ``users.readonly``."""
    rules = {"contact": Scope.CONTACTS_READ, "user": Scope.USERS_READ}
    for delivery in deliveries:
        recipient = delivery.recipient
        scope = rules.get(recipient.kind)
        if scope is not None and recipient.id is not None and not principal.can(scope):
            recipient.address = hidden(scope)
    return deliveries


def _hidden(row: Any, scope: Scope) -> Any:  # stands in for the row (attributes alone)
    values = row._asdict() if hasattr(row, "_asdict") else dict(vars(row))
    text = hidden(scope)
    return SimpleNamespace(
        **{
            name: value if name in KEPT or not isinstance(value, str) or not value else text
            for name, value in values.items()
            if not name.startswith("_")
        }
    )
