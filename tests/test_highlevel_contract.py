"""Every answer of the notification operations matches HighLevel's official spec, for both
the 2021-04-15 and the v3 spec, on success and on error."""

from __future__ import annotations

import httpx
import pytest

from tests.factories import Tenant, notification
from tests.spec import assert_conforms


@pytest.mark.parametrize("version", ["2021-04-15", "v3"])
async def test_full_lifecycle_matches_the_spec(
    client: httpx.AsyncClient, tenant: Tenant, version: str
) -> None:
    headers = tenant.headers(version=version)
    base = f"/calendars/{tenant.calendar_id}/notifications"

    created = await client.post(
        base,
        json=[
            notification(subject="Booked {{appointment.title}}"),
            notification(
                receiverType="phoneNumbers",
                channel="whatsapp",
                notificationType="reminder",
                beforeTime=[{"timeOffset": 1, "unit": "hours"}],
                additionalPhoneNumbers=["+919876744444"],
            ),
            notification(
                receiverType="business",
                channel="inApp",
                notificationType="cancellation",
                selectedUsers=["sub_account_admin", tenant.user_id],
            ),
        ],
        headers=headers,
    )
    assert created.status_code == 200
    assert_conforms("create-event-notification", created, version)
    first = created.json()[0]["_id"]

    listed = await client.get(
        base,
        params={"isActive": "true", "deleted": "false", "limit": 2, "skip": 1},
        headers=headers,
    )
    assert [n["notificationType"] for n in listed.json()] == ["reminder", "cancellation"]
    assert_conforms("get-event-notification", listed, version)

    one = await client.get(f"{base}/{first}", headers=headers)
    assert_conforms("find-event-notification", one, version)

    updated = await client.put(f"{base}/{first}", json={"isActive": False}, headers=headers)
    assert_conforms("update-event-notification", updated, version)

    deleted = await client.delete(f"{base}/{first}", headers=headers)
    assert_conforms("delete-event-notification", deleted, version)

    calendar = await client.get(f"/calendars/{tenant.calendar_id}", headers=headers)
    assert_conforms("get-calendar", calendar, version)


@pytest.mark.parametrize("version", ["2021-04-15", "v3"])
async def test_errors_match_the_spec(
    client: httpx.AsyncClient, tenant: Tenant, version: str
) -> None:
    base = f"/calendars/{tenant.calendar_id}/notifications"
    bad_body = await client.post(
        base, json=[notification(channel="fax")], headers=tenant.headers(version=version)
    )
    assert bad_body.status_code == 400
    assert_conforms("create-event-notification", bad_body, version)

    no_token = await client.get(base, headers={"Version": version})
    assert no_token.status_code == 401
    assert_conforms("get-event-notification", no_token, version)

    missing = await client.get(
        f"{base}/AAAAAAAAAAAAAAAAAAAA", headers=tenant.headers(version=version)
    )
    assert missing.status_code == 404
    assert_conforms("find-event-notification", missing, version)
