"""The five Calendar Notifications operations (semantics §2)."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.factories import Tenant, create_notifications, notification

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")

RESPONSE_FIELDS = {
    "_id",
    "receiverType",
    "additionalEmailIds",
    "additionalPhoneNumbers",
    "channel",
    "notificationType",
    "isActive",
    "additionalWhatsappNumbers",
    "templateId",
    "body",
    "subject",
    "afterTime",
    "beforeTime",
    "selectedUsers",
    "deleted",
    "calendarId",
    "locationId",
    "fromAddress",
    "fromName",
    "fromNumber",
    "dateAdded",
    "dateUpdated",
}


def url(tenant: Tenant, notification_id: str | None = None) -> str:
    base = f"/calendars/{tenant.calendar_id}/notifications"
    return f"{base}/{notification_id}" if notification_id else base


async def test_create_returns_every_field_with_defaults(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    [created] = await create_notifications(client, tenant, notification())
    assert set(created) == RESPONSE_FIELDS
    assert re.fullmatch(r"[A-Za-z0-9]{20}", str(created["_id"]))
    assert created["isActive"] is True
    assert created["deleted"] is False
    for name in (
        "additionalEmailIds",
        "additionalPhoneNumbers",
        "additionalWhatsappNumbers",
        "afterTime",
        "beforeTime",
        "selectedUsers",
    ):
        assert created[name] == []
    for name in ("templateId", "body", "subject", "fromAddress", "fromName", "fromNumber"):
        assert created[name] == ""
    assert created["calendarId"] == tenant.calendar_id
    assert created["locationId"] == tenant.location_id
    assert TIMESTAMP.fullmatch(str(created["dateAdded"]))
    assert created["dateAdded"] == created["dateUpdated"]


async def test_create_echoes_what_was_sent(client: httpx.AsyncClient, tenant: Tenant) -> None:
    item = {
        "receiverType": "phoneNumbers",
        "channel": "whatsapp",
        "notificationType": "followup",
        "isActive": False,
        "body": "Thanks {{contact.first_name}}, see you at {{location.name}}",
        "afterTime": [{"timeOffset": 1, "unit": "days"}, {"timeOffset": 1.5, "unit": "hour"}],
        "beforeTime": [{"timeOffset": 2, "unit": "hours"}],
        "additionalPhoneNumbers": ["+919876744444", "+919876744445"],
        "fromName": "Acme",
        "fromNumber": "+14155550199",
        "somethingHighLevelAdds": {"ignored": True},
    }
    [created] = await create_notifications(client, tenant, item)
    for key, value in item.items():
        if key != "somethingHighLevelAdds":
            assert created[key] == value, key
    assert "somethingHighLevelAdds" not in created
    assert created["additionalWhatsappNumbers"] == ["+919876744444", "+919876744445"]


async def test_whatsapp_numbers_only_for_whatsapp(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    [sms] = await create_notifications(
        client,
        tenant,
        notification(
            receiverType="phoneNumbers", channel="sms", additionalPhoneNumbers=["+14155550100"]
        ),
    )
    assert sms["additionalPhoneNumbers"] == ["+14155550100"]
    assert sms["additionalWhatsappNumbers"] == []


async def test_null_fields_count_as_absent(client: httpx.AsyncClient, tenant: Tenant) -> None:
    [created] = await create_notifications(
        client, tenant, notification(subject=None, templateId=None, afterTime=None, isActive=None)
    )
    assert created["subject"] == ""
    assert created["afterTime"] == []
    assert created["isActive"] is True


async def test_create_many_keeps_request_order(client: httpx.AsyncClient, tenant: Tenant) -> None:
    items = [notification(subject=f"n{i}") for i in range(12)]
    created = await create_notifications(client, tenant, *items)
    assert [c["subject"] for c in created] == [f"n{i}" for i in range(12)]
    listed = (await client.get(url(tenant), headers=tenant.headers())).json()
    assert [n["_id"] for n in listed] == [c["_id"] for c in created]


async def test_create_is_all_or_nothing(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post(
        url(tenant),
        json=[notification(), notification(), notification(channel="fax")],
        headers=tenant.headers(),
    )
    assert response.status_code == 400
    body = response.json()
    assert body["statusCode"] == 400
    assert body["error"] == "Bad Request"
    assert "[2].channel" in body["message"]
    assert body["errors"][0]["field"] == "[2].channel"
    listed = await client.get(url(tenant), headers=tenant.headers())
    assert listed.json() == []


@pytest.mark.parametrize("count", [0, 51])
async def test_batch_size_limits(client: httpx.AsyncClient, tenant: Tenant, count: int) -> None:
    response = await client.post(
        url(tenant), json=[notification()] * count, headers=tenant.headers()
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "body"


@pytest.mark.parametrize(
    "body",
    [{}, "x", 5, None, [1], ["x"]],
    ids=["object", "string", "number", "null", "number-item", "string-item"],
)
async def test_body_must_be_array_of_objects(
    client: httpx.AsyncClient, tenant: Tenant, body: object
) -> None:
    response = await client.post(url(tenant), json=body, headers=tenant.headers())
    assert response.status_code == 400
    assert response.json()["statusCode"] == 400


async def test_invalid_json_is_400(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post(
        url(tenant),
        content=b'[{"receiverType": ',
        headers={**tenant.headers(), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["errors"] == [{"field": "body", "message": "is not valid JSON"}]


# Each invalid item → the field its 400 must name.
INVALID_ITEMS: list[tuple[str, dict[str, object], str]] = [
    ("missing receiverType", {"channel": "email", "notificationType": "booked"}, "receiverType"),
    ("missing channel", {"receiverType": "contact", "notificationType": "booked"}, "channel"),
    ("missing type", {"receiverType": "contact", "channel": "email"}, "notificationType"),
    ("bad receiverType", notification(receiverType="everyone"), "receiverType"),
    ("bad channel", notification(channel="fax"), "channel"),
    ("bad notificationType", notification(notificationType="birthday"), "notificationType"),
    ("guest by sms", notification(receiverType="guest", channel="sms"), "receiverType"),
    ("guest by whatsapp", notification(receiverType="guest", channel="whatsapp"), "receiverType"),
    ("guest in app", notification(receiverType="guest", channel="inApp"), "receiverType"),
    ("contact in app", notification(receiverType="contact", channel="inApp"), "receiverType"),
    (
        "emails by sms",
        notification(receiverType="emails", channel="sms", additionalEmailIds=["a@example.com"]),
        "receiverType",
    ),
    (
        "phoneNumbers by email",
        notification(receiverType="phoneNumbers", additionalPhoneNumbers=["+14155550100"]),
        "receiverType",
    ),
    ("business by sms", notification(receiverType="business", channel="sms"), "receiverType"),
    ("emails without addresses", notification(receiverType="emails"), "additionalEmailIds"),
    (
        "emails with a bad address",
        notification(receiverType="emails", additionalEmailIds=["a@example.com", "nope"]),
        "additionalEmailIds[1]",
    ),
    (
        "phoneNumbers without numbers",
        notification(receiverType="phoneNumbers", channel="sms"),
        "additionalPhoneNumbers",
    ),
    (
        "phoneNumbers not E.164",
        notification(
            receiverType="phoneNumbers", channel="sms", additionalPhoneNumbers=["4155550100"]
        ),
        "additionalPhoneNumbers[0]",
    ),
    (
        "phone too short",
        notification(
            receiverType="phoneNumbers", channel="sms", additionalPhoneNumbers=["+1234567"]
        ),
        "additionalPhoneNumbers[0]",
    ),
    (
        "phone too long",
        notification(
            receiverType="phoneNumbers", channel="sms", additionalPhoneNumbers=["+1234567890123456"]
        ),
        "additionalPhoneNumbers[0]",
    ),
    (
        "business inApp without users",
        notification(receiverType="business", channel="inApp"),
        "selectedUsers",
    ),
    (
        "unknown selected user",
        notification(receiverType="business", selectedUsers=["AAAAAAAAAAAAAAAAAAAA"]),
        "selectedUsers[0]",
    ),
    (
        "malformed selected user",
        notification(receiverType="business", selectedUsers=["sub_account_admin", "bob"]),
        "selectedUsers[1]",
    ),
    ("reminder without beforeTime", notification(notificationType="reminder"), "beforeTime"),
    (
        "reminder with only afterTime",
        notification(notificationType="reminder", afterTime=[{"timeOffset": 1, "unit": "hours"}]),
        "beforeTime",
    ),
    ("followup without afterTime", notification(notificationType="followup"), "afterTime"),
    (
        "negative offset",
        notification(notificationType="reminder", beforeTime=[{"timeOffset": -1, "unit": "hours"}]),
        "beforeTime[0].timeOffset",
    ),
    (
        "offset as string",
        notification(
            notificationType="reminder", beforeTime=[{"timeOffset": "1", "unit": "hours"}]
        ),
        "beforeTime[0].timeOffset",
    ),
    (
        "offset missing",
        notification(notificationType="reminder", beforeTime=[{"unit": "hours"}]),
        "beforeTime[0].timeOffset",
    ),
    (
        "unknown unit",
        notification(
            notificationType="reminder", beforeTime=[{"timeOffset": 1, "unit": "fortnights"}]
        ),
        "beforeTime[0].unit",
    ),
    (
        "unit missing",
        notification(notificationType="followup", afterTime=[{"timeOffset": 1}]),
        "afterTime[0].unit",
    ),
    (
        "offset over a year",
        notification(notificationType="reminder", beforeTime=[{"timeOffset": 366, "unit": "days"}]),
        "beforeTime[0].timeOffset",
    ),
    (
        "offset over a year in weeks",
        notification(notificationType="reminder", beforeTime=[{"timeOffset": 53, "unit": "weeks"}]),
        "beforeTime[0].timeOffset",
    ),
    (
        "eleven entries",
        notification(
            notificationType="reminder",
            beforeTime=[{"timeOffset": i, "unit": "hours"} for i in range(11)],
        ),
        "beforeTime",
    ),
    ("unknown template", notification(templateId="AAAAAAAAAAAAAAAAAAAA"), "templateId"),
    (
        "template on inApp",
        notification(
            receiverType="assignedUser", channel="inApp", templateId="AAAAAAAAAAAAAAAAAAAA"
        ),
        "templateId",
    ),
    ("bad fromAddress", notification(fromAddress="not an address"), "fromAddress"),
    ("bad fromNumber", notification(fromNumber="555-0100"), "fromNumber"),
    ("subject too long", notification(subject="x" * 256), "subject"),
    ("subject with a line break", notification(subject="Hi\r\nBcc: x@example.com"), "subject"),
    ("body over 64 KiB", notification(body="x" * (64 * 1024 + 1)), "body"),
    ("string over 4 KiB", notification(fromName="x" * 4097), "fromName"),
    (
        "list over 50",
        notification(
            receiverType="emails", additionalEmailIds=[f"a{i}@example.com" for i in range(51)]
        ),
        "additionalEmailIds",
    ),
    ("body does not parse", notification(body="Hi {% if %}"), "body"),
    ("unknown merge field in body", notification(body="Hi {{contact.nickname}}"), "body"),
    ("unknown merge field in subject", notification(subject="{{ whatever }}"), "subject"),
    ("unknown filter", notification(body="{{ contact.name | shout }}"), "body"),
    ("include tag", notification(body="{% include 'secrets' %}"), "body"),
    ("isActive as string", notification(isActive="true"), "isActive"),
    ("body as number", notification(body=5), "body"),
    ("selectedUsers not a list", notification(selectedUsers="sub_account_admin"), "selectedUsers"),
    ("NUL in a string", notification(fromName="a\x00b"), "fromName"),
]


@pytest.mark.parametrize(
    ("item", "field"), [(i, f) for _, i, f in INVALID_ITEMS], ids=[n for n, _, _ in INVALID_ITEMS]
)
async def test_each_invalid_item_names_its_field(
    client: httpx.AsyncClient, tenant: Tenant, item: dict[str, object], field: str
) -> None:
    response = await client.post(url(tenant), json=[notification(), item], headers=tenant.headers())
    assert response.status_code == 400, response.text
    body = response.json()
    fields = [e["field"] for e in body["errors"]]
    assert f"[1].{field}" in fields, body
    assert f"[1].{field}" in body["message"]
    assert all(f.startswith("[1].") for f in fields), fields


VALID_ITEMS: list[tuple[str, dict[str, object]]] = [
    ("contact email", notification()),
    ("guest email", notification(receiverType="guest")),
    ("assigned user sms", notification(receiverType="assignedUser", channel="sms")),
    ("assigned user in app", notification(receiverType="assignedUser", channel="inApp")),
    ("contact whatsapp", notification(channel="whatsapp")),
    ("business email with no users", notification(receiverType="business")),
    (
        "business inApp admins",
        notification(receiverType="business", channel="inApp", selectedUsers=["sub_account_admin"]),
    ),
    (
        "fractional offset",
        notification(
            notificationType="reminder", beforeTime=[{"timeOffset": 0.5, "unit": "hours"}]
        ),
    ),
    (
        "zero offset",
        notification(notificationType="followup", afterTime=[{"timeOffset": 0, "unit": "mins"}]),
    ),
    (
        "singular units",
        notification(
            notificationType="reminder",
            beforeTime=[
                {"timeOffset": 1, "unit": u}
                for u in ("minute", "mins", "hour", "day", "week", "minutes", "weeks")
            ],
        ),
    ),
    (
        "exactly a year",
        notification(notificationType="reminder", beforeTime=[{"timeOffset": 365, "unit": "days"}]),
    ),
    (
        "ten entries",
        notification(
            notificationType="reminder",
            beforeTime=[{"timeOffset": i, "unit": "hours"} for i in range(10)],
        ),
    ),
    ("schedules ignored for booked", notification(beforeTime=[{"timeOffset": 1, "unit": "hours"}])),
    (
        "every merge group",
        notification(
            subject="{{appointment.title}} with {{user.name}}",
            body="{{contact.first_name}} {{appointment.only_start_date}} "
            "{{appointment.only_start_time}} {{appointment.day_of_week}} "
            "{{appointment.timezone}} {{calendar.name}} {{location.full_address}} "
            "{% if contact.email %}{{ contact.email | downcase }}{% endif %}",
        ),
    ),
    ("subject of 255", notification(subject="x" * 255)),
    (
        "from address and number",
        notification(fromAddress="desk@example.com", fromName="Desk", fromNumber="+14155550100"),
    ),
]


@pytest.mark.parametrize("item", [i for _, i in VALID_ITEMS], ids=[n for n, _ in VALID_ITEMS])
async def test_valid_items_are_accepted(
    client: httpx.AsyncClient, tenant: Tenant, item: dict[str, object]
) -> None:
    [created] = await create_notifications(client, tenant, item)
    assert created["receiverType"] == item["receiverType"]


async def test_selected_users_of_this_location(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    ok = notification(
        receiverType="business",
        channel="inApp",
        selectedUsers=[tenant.user_id, "sub_account_admin"],
    )
    [created] = await create_notifications(client, tenant, ok)
    assert created["selectedUsers"] == [tenant.user_id, "sub_account_admin"]

    foreign = notification(
        receiverType="business", channel="inApp", selectedUsers=[other_tenant.user_id]
    )
    response = await client.post(url(tenant), json=[foreign], headers=tenant.headers())
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "[0].selectedUsers[0]"


async def test_template_must_exist_here_and_match_the_channel(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    email_template = await tenant.add_template("email")
    sms_template = await tenant.add_template("sms")
    foreign_template = await other_tenant.add_template("email")

    [created] = await create_notifications(client, tenant, notification(templateId=email_template))
    assert created["templateId"] == email_template
    await create_notifications(client, tenant, notification(channel="sms", templateId=sms_template))

    for bad in (
        notification(templateId=sms_template),
        notification(channel="whatsapp", templateId=sms_template),
        notification(templateId=foreign_template),
    ):
        response = await client.post(url(tenant), json=[bad], headers=tenant.headers())
        assert response.status_code == 400
        assert response.json()["errors"][0]["field"] == "[0].templateId"


async def test_several_problems_are_all_reported(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post(
        url(tenant),
        json=[
            notification(receiverType="emails"),
            notification(notificationType="reminder", subject="{{nope}}"),
        ],
        headers=tenant.headers(),
    )
    assert response.status_code == 400
    fields = [e["field"] for e in response.json()["errors"]]
    assert fields == ["[0].additionalEmailIds", "[1].beforeTime", "[1].subject"]
    assert response.json()["message"].count("; ") == 2


# --- list --------------------------------------------------------------------------------


async def _seed(client: httpx.AsyncClient, tenant: Tenant) -> list[str]:
    created = await create_notifications(
        client,
        tenant,
        notification(subject="a"),
        notification(subject="b", isActive=False),
        notification(subject="c"),
        notification(subject="d"),
    )
    ids = [str(c["_id"]) for c in created]
    response = await client.delete(url(tenant, ids[3]), headers=tenant.headers())
    assert response.status_code == 200
    return ids


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", "abc"),
        ("isActive=true", "ac"),
        ("isActive=false", "b"),
        ("isActive=TRUE", "ac"),
        ("deleted=true", "d"),
        ("deleted=false", "abc"),
        ("deleted=true&isActive=false", ""),
        ("isActive=1", "ac"),
        ("isActive=0", "b"),
        ("deleted=1", "d"),
        ("deleted=FALSE", "abc"),
        ("isActive=False&deleted=0", "b"),
        ("limit=2", "ab"),
        ("limit=2.0", "ab"),
        ("skip=1", "bc"),
        ("limit=1&skip=1", "b"),
        ("skip=10", ""),
        ("limit=100&skip=0", "abc"),
        ("unknownParam=1", "abc"),
    ],
)
async def test_list_filters_and_coercion(
    client: httpx.AsyncClient, tenant: Tenant, query: str, expected: str
) -> None:
    await _seed(client, tenant)
    response = await client.get(f"{url(tenant)}?{query}", headers=tenant.headers())
    assert response.status_code == 200, response.text
    assert "".join(n["subject"] for n in response.json()) == expected


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("isActive=maybe", "isActive"),
        ("isActive=yes", "isActive"),
        ("isActive=no", "isActive"),
        ("isActive=on", "isActive"),
        ("isActive=t", "isActive"),
        ("isActive=", "isActive"),
        ("deleted=2", "deleted"),
        ("deleted=off", "deleted"),
        ("deleted=y", "deleted"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=1.5", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("limit=nan", "limit"),
        ("skip=-1", "skip"),
        ("skip=0.5", "skip"),
        ("skip=1e30", "skip"),
        ("skip=inf", "skip"),
    ],
)
async def test_list_rejects_bad_query_values(
    client: httpx.AsyncClient, tenant: Tenant, query: str, field: str
) -> None:
    response = await client.get(f"{url(tenant)}?{query}", headers=tenant.headers())
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["errors"][0]["field"] == field
    assert body["message"].startswith(f"{field}: ")
    if field in ("isActive", "deleted"):
        assert body["message"] == f"{field}: must be true or false (or 1 or 0)"


async def test_list_is_per_calendar(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await create_notifications(client, tenant, notification())
    second = await tenant.add_calendar()
    response = await client.get(f"/calendars/{second}/notifications", headers=tenant.headers())
    assert response.status_code == 200
    assert response.json() == []


# --- get, update, delete -------------------------------------------------------------------


async def test_get_one(client: httpx.AsyncClient, tenant: Tenant) -> None:
    [created] = await create_notifications(client, tenant, notification(subject="hello"))
    response = await client.get(url(tenant, str(created["_id"])), headers=tenant.headers())
    assert response.status_code == 200
    assert response.json() == created


@pytest.mark.parametrize("notification_id", ["AAAAAAAAAAAAAAAAAAAA", "short", "x" * 300, "%20"])
async def test_get_unknown_is_404(
    client: httpx.AsyncClient, tenant: Tenant, notification_id: str
) -> None:
    response = await client.get(url(tenant, notification_id), headers=tenant.headers())
    assert response.status_code == 404
    assert response.json() == {
        "statusCode": 404,
        "message": "Notification not found",
        "error": "Not Found",
    }


async def test_notification_of_another_calendar_is_404(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    [created] = await create_notifications(client, tenant, notification())
    second = await tenant.add_calendar()
    response = await client.get(
        f"/calendars/{second}/notifications/{created['_id']}", headers=tenant.headers()
    )
    assert response.status_code == 404


async def test_update_is_partial(client: httpx.AsyncClient, tenant: Tenant) -> None:
    [created] = await create_notifications(
        client, tenant, notification(subject="before", body="Hi {{contact.name}}")
    )
    target = url(tenant, str(created["_id"]))
    response = await client.put(target, json={"subject": "after"}, headers=tenant.headers())
    assert response.status_code == 200
    assert response.json() == {"message": "Notification updated successfully"}
    after = (await client.get(target, headers=tenant.headers())).json()
    assert after["subject"] == "after"
    assert after["body"] == "Hi {{contact.name}}"
    assert after["dateAdded"] == created["dateAdded"]
    assert after["dateUpdated"] >= created["dateUpdated"]


async def test_update_validates_the_merged_result(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    [created] = await create_notifications(client, tenant, notification())
    target = url(tenant, str(created["_id"]))
    # A reminder needs beforeTime: changing only the type leaves the merged rule invalid.
    response = await client.put(
        target, json={"notificationType": "reminder"}, headers=tenant.headers()
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "beforeTime"
    # Switching the channel to sms makes guest-free contact fine, but inApp is not.
    response = await client.put(target, json={"channel": "inApp"}, headers=tenant.headers())
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "receiverType"
    response = await client.put(
        target,
        json={"notificationType": "reminder", "beforeTime": [{"timeOffset": 2, "unit": "hours"}]},
        headers=tenant.headers(),
    )
    assert response.status_code == 200
    after = (await client.get(target, headers=tenant.headers())).json()
    assert after["notificationType"] == "reminder"
    assert after["beforeTime"] == [{"timeOffset": 2, "unit": "hours"}]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"channel": "fax"}, "channel"),
        ({"isActive": "no"}, "isActive"),
        ({"subject": "{{nope}}"}, "subject"),
        ({"additionalEmailIds": ["x"]}, "additionalEmailIds[0]"),
        ({"deleted": 1}, "deleted"),
    ],
)
async def test_update_rejects_bad_fields(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, object], field: str
) -> None:
    [created] = await create_notifications(client, tenant, notification())
    response = await client.put(
        url(tenant, str(created["_id"])), json=body, headers=tenant.headers()
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == field


async def test_update_can_deactivate_and_soft_delete(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    [created] = await create_notifications(client, tenant, notification())
    target = url(tenant, str(created["_id"]))
    await client.put(target, json={"isActive": False}, headers=tenant.headers())
    assert (await client.get(target, headers=tenant.headers())).json()["isActive"] is False
    await client.put(target, json={"deleted": True}, headers=tenant.headers())
    assert (await client.get(url(tenant), headers=tenant.headers())).json() == []
    await client.put(target, json={"deleted": False}, headers=tenant.headers())
    assert len((await client.get(url(tenant), headers=tenant.headers())).json()) == 1


async def test_update_unknown_is_404(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.put(
        url(tenant, "AAAAAAAAAAAAAAAAAAAA"), json={"subject": "x"}, headers=tenant.headers()
    )
    assert response.status_code == 404


async def test_delete_is_soft_and_idempotent(client: httpx.AsyncClient, tenant: Tenant) -> None:
    [created] = await create_notifications(client, tenant, notification())
    target = url(tenant, str(created["_id"]))
    for _ in range(2):
        response = await client.delete(target, headers=tenant.headers())
        assert response.status_code == 200
        assert response.json() == {"message": "Notification deleted successfully"}
    one = (await client.get(target, headers=tenant.headers())).json()
    assert one["deleted"] is True
    assert (await client.get(url(tenant), headers=tenant.headers())).json() == []
    deleted = (await client.get(f"{url(tenant)}?deleted=true", headers=tenant.headers())).json()
    assert [n["_id"] for n in deleted] == [created["_id"]]


async def test_delete_unknown_is_404(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.delete(url(tenant, "AAAAAAAAAAAAAAAAAAAA"), headers=tenant.headers())
    assert response.status_code == 404


async def test_unknown_calendar_is_404(client: httpx.AsyncClient, tenant: Tenant) -> None:
    for method, path, kwargs in [
        ("GET", "/calendars/AAAAAAAAAAAAAAAAAAAA/notifications", {}),
        ("POST", "/calendars/AAAAAAAAAAAAAAAAAAAA/notifications", {"json": [notification()]}),
        ("GET", "/calendars/nope/notifications/AAAAAAAAAAAAAAAAAAAA", {}),
    ]:
        response = await client.request(method, path, headers=tenant.headers(), **kwargs)
        assert response.status_code == 404
        assert response.json()["message"] == "Calendar not found"


@pytest.mark.parametrize("version", ["2021-04-15", "v3", "2021-07-28"])
async def test_every_supported_version_works(
    client: httpx.AsyncClient, tenant: Tenant, version: str
) -> None:
    response = await client.post(
        url(tenant), json=[notification()], headers=tenant.headers(version=version)
    )
    assert response.status_code == 200
    response = await client.get(url(tenant), headers=tenant.headers(version=version))
    assert response.status_code == 200


async def test_trailing_slash_is_served_without_redirect(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.post(url(tenant) + "/", json=[notification()], headers=tenant.headers())
    assert response.status_code == 200
    response = await client.get(url(tenant) + "/", headers=tenant.headers())
    assert response.status_code == 200
    assert len(response.json()) == 1
