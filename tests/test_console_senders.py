"""The console warns of a rule whose sender is not an allowed sender of its location."""

from __future__ import annotations

import httpx

from calnotify.db.engine import Database
from calnotify.models import AllowedSender
from tests.factories import Tenant, create_notifications, notification
from tests.test_console import signed_in, text_of

NOT_ALLOWED = (
    "Warning: From address desk@acme.example is not an allowed sender of this location: its "
    "emails go out from the service's own address, with desk@acme.example as Reply-To. To "
    "send from it, an operator runs `calnotify senders add --location {location} --email "
    "desk@acme.example`."
)


async def allow(db: Database, tenant: Tenant, kind: str, value: str) -> None:
    async with db.session() as session:
        session.add(AllowedSender(location_id=tenant.location_id, kind=kind, value=value))


async def test_the_rule_list_warns_of_each_sender_that_is_not_allowed(
    client: httpx.AsyncClient, db: Database, tenant: Tenant
) -> None:
    await allow(db, tenant, "number", "+14155550100")
    await create_notifications(
        client,
        tenant,
        notification(fromAddress="desk@acme.example"),
        notification(channel="sms", fromNumber="+1 (415) 555-0100"),  # allowed
        notification(channel="sms", fromNumber="+14155550199"),
        notification(fromNumber="+14155550199"),  # an email rule: its number is not used
        notification(),
    )
    await signed_in(client, tenant)
    page = await client.get(f"/console/calendars/{tenant.calendar_id}")
    assert page.status_code == 200
    shown = text_of(page.text)
    assert shown.count("Warning:") == 3  # the summary and two rules
    assert "Warning: Some rules name a sender that is not an allowed sender" in shown
    assert NOT_ALLOWED.format(location=tenant.location_id) in shown
    assert (
        "Warning: From number +14155550199 is not an allowed sender of this location: its "
        "messages go out from the service's own number." in shown
    )
    assert "+14155550100 is not an allowed sender" not in shown


async def test_no_warning_once_the_sender_is_allowed_whatever_its_case(
    client: httpx.AsyncClient, db: Database, tenant: Tenant
) -> None:
    [rule] = await create_notifications(
        client, tenant, notification(fromAddress="desk@acme.example")
    )
    await signed_in(client, tenant)
    edit = f"/console/calendars/{tenant.calendar_id}/rules/{rule['_id']}/edit"
    before = text_of((await client.get(edit)).text)
    assert NOT_ALLOWED.format(location=tenant.location_id) in before

    await allow(db, tenant, "email", "DESK@acme.example")
    for path in (edit, f"/console/calendars/{tenant.calendar_id}"):
        page = await client.get(path)
        assert page.status_code == 200
        assert "Warning:" not in text_of(page.text)
