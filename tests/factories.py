"""Small factories for test data, built through the same services the CLI uses."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from calnotify.auth.tokens import issue_token
from calnotify.db.engine import Database
from calnotify.locations.service import create_location
from calnotify.models import Calendar, Contact, Template
from calnotify.users.service import create_user

VERSION = "2021-04-15"


@dataclass
class Tenant:
    """A location with an admin, a plain user, a token with every scope and a calendar."""

    db: Database
    location_id: str
    token: str
    admin_id: str
    user_id: str
    calendar_id: str
    extra_tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, token: str | None = None, version: str | None = VERSION) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        if version is not None:
            headers["Version"] = version
        return headers

    async def token_with(self, *scopes: str) -> str:
        async with self.db.session() as session:
            issued = await issue_token(session, self.location_id, list(scopes))
        return issued.token

    async def add_template(self, kind: str, name: str = "T") -> str:
        async with self.db.session() as session:
            template = Template(location_id=self.location_id, name=name, type=kind)
            session.add(template)
            await session.flush()
            return template.id

    async def add_contact(self, **fields: object) -> str:
        values: dict[str, object] = {
            "first_name": "Rosa",
            "last_name": "Diaz",
            "email": "rosa@example.com",
            "phone": "+14155550123",
            "timezone": "",
            "dnd": False,
            "dnd_settings": {},
            "tags": [],
            "extra": {},
        }
        values.update(fields)
        async with self.db.session() as session:
            contact = Contact(location_id=self.location_id, **values)
            session.add(contact)
            await session.flush()
            return contact.id

    async def add_calendar(self, name: str = "Second") -> str:
        async with self.db.session() as session:
            calendar = Calendar(location_id=self.location_id, name=name)
            session.add(calendar)
            await session.flush()
            return calendar.id


async def make_tenant(db: Database, name: str) -> Tenant:
    async with db.session() as session:
        location = await create_location(
            session, name=name, email="front@example.com", timezone="America/New_York"
        )
        admin = await create_user(
            session, location_id=location.id, email="admin@example.com", role="admin"
        )
        user = await create_user(
            session, location_id=location.id, email="user@example.com", phone="+14155550100"
        )
        issued = await issue_token(session, location.id)
        calendar = Calendar(location_id=location.id, name=f"{name} calendar")
        session.add(calendar)
        await session.flush()
        return Tenant(
            db=db,
            location_id=location.id,
            token=issued.token,
            admin_id=admin.id,
            user_id=user.id,
            calendar_id=calendar.id,
        )


def notification(**fields: object) -> dict[str, object]:
    """A valid create item (contact email booked) with ``fields`` replacing its defaults."""
    item: dict[str, object] = {
        "receiverType": "contact",
        "channel": "email",
        "notificationType": "booked",
    }
    item.update(fields)
    return item


async def create_notifications(
    client: httpx.AsyncClient, tenant: Tenant, *items: dict[str, object]
) -> list[dict[str, object]]:
    response = await client.post(
        f"/calendars/{tenant.calendar_id}/notifications",
        json=list(items) or [notification()],
        headers=tenant.headers(),
    )
    assert response.status_code == 200, response.text
    created: list[dict[str, object]] = response.json()
    return created
