"""Plan preview (a calnotify extension): what an appointment would get, rendered, with
nothing stored and nothing sent."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from calnotify.app import create_app
from calnotify.clock import ManualClock
from calnotify.config import Settings
from calnotify.db.engine import Database
from calnotify.models import (
    Appointment,
    AppointmentEvent,
    Contact,
    Delivery,
    Notification,
    OutboxMessage,
)
from calnotify.notifications.preview import MAX_OCCURRENCES
from tests.conftest import NOW
from tests.engine import Scenario
from tests.factories import Tenant
from tests.test_auth_before_lock import PROMPT, app_write_lock, prompt

START = NOW + timedelta(days=2)  # 2030-01-03 12:00 UTC, 07:00 in New York
END = START + timedelta(minutes=30)
HOUR_BEFORE = [{"timeOffset": 1, "unit": "hours"}]


def rule(receiver: str, channel: str, kind: str, **fields: Any) -> dict[str, Any]:
    return {"receiverType": receiver, "channel": channel, "notificationType": kind, **fields}


def times(start: datetime = START, end: datetime = END) -> dict[str, str]:
    return {"startTime": start.isoformat(), "endTime": end.isoformat()}


async def preview(client: httpx.AsyncClient, tenant: Tenant, **body: Any) -> httpx.Response:
    return await client.post(
        f"/calendars/{tenant.calendar_id}/notifications/preview",
        json=body,
        headers=tenant.headers(),
    )


async def planned(client: httpx.AsyncClient, tenant: Tenant, **body: Any) -> list[dict[str, Any]]:
    response = await preview(client, tenant, **body)
    assert response.status_code == 200, response.text
    assert response.json()["truncated"] is False
    deliveries: list[dict[str, Any]] = response.json()["deliveries"]
    return deliveries


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@pytest.fixture
def scenario(
    client: httpx.AsyncClient, tenant: Tenant, clock: ManualClock, db: Database, settings: Settings
) -> Scenario:
    return Scenario(client, tenant, clock, db, settings)


async def counts(db: Database) -> dict[str, int]:
    async with db.session(write=False) as session:
        return {
            model.__tablename__: int(
                await session.scalar(select(func.count()).select_from(model)) or 0
            )
            for model in (Appointment, AppointmentEvent, Contact, Delivery, Notification)
        } | {
            "outbox": int(
                await session.scalar(select(func.count()).select_from(OutboxMessage)) or 0
            )
        }


# --- what is planned -------------------------------------------------------------------------


async def test_a_booked_email_rule_plans_one_delivery_rendered_with_merge_fields(
    client: httpx.AsyncClient, tenant: Tenant, scenario: Scenario
) -> None:
    [stored] = await scenario.rules(
        rule(
            "contact",
            "email",
            "booked",
            subject="Booked, {{contact.first_name}}",
            body="See you {{appointment.only_start_time}} at {{location.name}}.",
        )
    )
    contact_id = await tenant.add_contact(timezone="Europe/Paris")

    [delivery] = await planned(client, tenant, contactId=contact_id, **times())

    assert delivery == {
        "notificationId": stored["_id"],
        "notificationType": "booked",
        "channel": "email",
        "receiverType": "contact",
        "recipient": {
            "kind": "contact",
            "id": contact_id,
            "name": "Rosa Diaz",
            "address": "rosa@example.com",
        },
        "dueAt": iso(NOW),
        # Contact-facing: shown in the contact's zone (Paris is UTC+1 in January).
        "dueAtLocal": "2030-01-01T13:00:00+01:00",
        "status": "planned",
        "skipReason": None,
        "subject": "Booked, Rosa",
        "text": "See you 1:00 PM at Acme Dental.",
        "html": "<p>See you 1:00 PM at Acme Dental.</p>",
        "renderError": None,
        "instanceId": None,
    }


async def test_reminders_and_follow_ups_are_due_at_their_offsets_in_due_order(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    found = await planned(
        client,
        tenant,
        **times(),
        notifications=[
            rule("contact", "email", "followup", afterTime=[{"timeOffset": 1, "unit": "days"}]),
            rule("contact", "sms", "reminder", beforeTime=HOUR_BEFORE),
            rule("contact", "email", "booked"),
        ],
    )
    assert [(d["notificationId"], d["notificationType"], d["dueAt"]) for d in found] == [
        ("draft-2", "booked", iso(NOW)),
        ("draft-1", "reminder", iso(START - timedelta(hours=1))),
        ("draft-0", "followup", iso(END + timedelta(days=1))),
    ]
    reminder = found[1]
    assert reminder["status"] == "planned"
    assert reminder["dueAtLocal"] == "2030-01-03T06:00:00-05:00"  # the location's zone
    # The sample contact, when the request names none.
    assert reminder["recipient"] == {
        "kind": "contact",
        "id": None,
        "name": "Sample Contact",
        "address": "+15550100",
    }
    assert reminder["text"].startswith("Hi Sample, a reminder of your appointment")
    assert reminder["subject"] is None
    assert reminder["html"] is None


async def test_a_reminder_already_past_is_skipped_late(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    soon = NOW + timedelta(minutes=30)
    [reminder] = await planned(
        client,
        tenant,
        **times(soon, soon + timedelta(minutes=30)),
        notifications=[rule("contact", "email", "reminder", beforeTime=HOUR_BEFORE)],
    )
    assert reminder["status"] == "skipped"
    assert reminder["skipReason"] == "late"
    assert reminder["dueAt"] == iso(NOW - timedelta(minutes=30))


async def test_a_contact_on_dnd_is_skipped_dnd(client: httpx.AsyncClient, tenant: Tenant) -> None:
    on_dnd = await tenant.add_contact(dnd=True)
    rules = [rule("contact", "email", "booked"), rule("contact", "sms", "booked")]
    found = await planned(client, tenant, contactId=on_dnd, **times(), notifications=rules)
    assert [(d["channel"], d["status"], d["skipReason"]) for d in found] == [
        ("email", "skipped", "dnd"),
        ("sms", "skipped", "dnd"),
    ]
    # DND for one channel only, on an inline contact.
    found = await planned(
        client,
        tenant,
        contact={"firstName": "Ann", "email": "ann@example.com", "phone": "+14155550199",
                 "dndSettings": {"SMS": {"status": "active"}}},
        **times(),
        notifications=rules,
    )  # fmt: skip
    assert [(d["channel"], d["status"], d["skipReason"]) for d in found] == [
        ("email", "planned", None),
        ("sms", "skipped", "dnd"),
    ]
    assert found[0]["recipient"]["name"] == "Ann"


async def test_a_recipient_without_the_address_is_skipped_no_address(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    found = await planned(
        client,
        tenant,
        contact={"name": "Guy Incognito", "email": "guy@example.com"},
        guests=[{"email": "g@example.com", "name": "Gail"}, {"phone": "+14155550111"}],
        **times(),
        notifications=[rule("contact", "sms", "booked"), rule("guest", "email", "booked")],
    )
    assert [(d["recipient"], d["status"], d["skipReason"]) for d in found] == [
        (
            {"kind": "contact", "id": None, "name": "Guy Incognito", "address": ""},
            "skipped",
            "no_address",
        ),
        (
            {"kind": "guest", "id": None, "name": "Gail", "address": "g@example.com"},
            "planned",
            None,
        ),
        # A guest with a phone and no email gets no email.
        ({"kind": "guest", "id": None, "name": "", "address": ""}, "skipped", "no_address"),
    ]


async def test_team_recipients_and_in_app(client: httpx.AsyncClient, tenant: Tenant) -> None:
    found = await planned(
        client,
        tenant,
        assignedUserId=tenant.user_id,
        **times(),
        notifications=[
            rule("assignedUser", "inApp", "booked"),
            rule("business", "email", "booked"),  # nobody selected: the location's email
            rule("emails", "email", "booked", additionalEmailIds=["ops@example.com"]),
        ],
    )
    assert [d["recipient"] for d in found] == [
        {"kind": "user", "id": tenant.user_id, "name": "", "address": tenant.user_id},
        {
            "kind": "location",
            "id": tenant.location_id,
            "name": "Acme Dental",
            "address": "front@example.com",
        },
        {"kind": "additional", "id": None, "name": "", "address": "ops@example.com"},
    ]
    in_app = found[0]
    assert in_app["subject"] == "Appointment booked: Acme Dental calendar"  # its title
    assert in_app["text"].startswith("New appointment with Sample Contact")
    assert in_app["html"] is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, ["booked", "reminder"]),
        ({"appointmentStatus": "confirmed"}, ["confirmation", "reminder"]),
        ({"appointmentStatus": "showed"}, []),
        ({"event": "confirmed"}, ["confirmation", "reminder"]),
        ({"event": "rescheduled"}, ["reschedule", "reminder"]),
        ({"event": "cancelled"}, ["cancellation"]),
        ({"event": "cancelled", "appointmentStatus": "noshow"}, ["cancellation"]),
    ],
)
async def test_the_simulated_event_follows_the_trigger_table(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any], expected: list[str]
) -> None:
    rules = [
        rule("contact", "email", kind)
        for kind in ("booked", "confirmation", "cancellation", "reschedule")
    ] + [rule("contact", "email", "reminder", beforeTime=HOUR_BEFORE)]
    found = await planned(client, tenant, **times(), notifications=rules, **body)
    assert [d["notificationType"] for d in found] == expected


async def test_a_stored_template_is_rendered(client: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await client.post(
        f"/locations/{tenant.location_id}/templates",
        json={
            "name": "Booked",
            "type": "email",
            "template": {
                "subject": "Your visit, {{contact.name}}",
                "html": "<p>On <b>{{appointment.only_start_date}}</b></p>",
            },
        },
        headers=tenant.headers(),
    )
    assert created.status_code == 201, created.text
    [delivery] = await planned(
        client,
        tenant,
        **times(),
        notifications=[rule("contact", "email", "booked", templateId=created.json()["id"])],
    )
    assert delivery["subject"] == "Your visit, Sample Contact"
    assert delivery["html"] == "<p>On <b>January 3, 2030</b></p>"
    assert delivery["text"] == "On January 3, 2030"


# --- stored appointments and series ----------------------------------------------------------


async def test_a_stored_appointment_is_previewed_as_it_is(
    client: httpx.AsyncClient, tenant: Tenant, scenario: Scenario
) -> None:
    await scenario.rules(
        rule("contact", "email", "reschedule", body="Moved: {{appointment.title}}"),
        rule("contact", "email", "reminder", beforeTime=HOUR_BEFORE),
    )
    contact_id = await tenant.add_contact()
    booked = await scenario.book(contact_id, START, title="Cleaning")

    found = await planned(client, tenant, appointmentId=booked["id"], event="rescheduled")
    assert [(d["notificationType"], d["dueAt"], d["recipient"]["id"]) for d in found] == [
        ("reschedule", iso(NOW), contact_id),
        ("reminder", iso(START - timedelta(hours=1)), contact_id),
    ]
    assert found[0]["text"] == "Moved: Cleaning"

    # The appointment's own fields are its own.
    refused = await preview(client, tenant, appointmentId=booked["id"], **times())
    assert refused.status_code == 400
    assert [e["field"] for e in refused.json()["errors"]] == ["startTime", "endTime"]
    # One of another calendar, or none at all.
    other_calendar = await tenant.add_calendar()
    elsewhere = await scenario.book(contact_id, START, calendarId=other_calendar)
    for unknown in (elsewhere["id"], "A" * 20, "nope"):
        refused = await preview(client, tenant, appointmentId=unknown)
        assert refused.status_code == 400
        assert refused.json()["errors"] == [
            {"field": "appointmentId", "message": "is not an appointment of this calendar"}
        ]


async def test_a_series_gets_one_booked_and_reminders_per_occurrence(
    client: httpx.AsyncClient, tenant: Tenant, scenario: Scenario
) -> None:
    rules = [
        rule("contact", "email", "booked"),
        rule("contact", "email", "reminder", beforeTime=HOUR_BEFORE),
    ]
    found = await planned(
        client, tenant, **times(), rrule="RRULE:FREQ=WEEKLY;COUNT=6", notifications=rules
    )
    starts = [START + timedelta(weeks=k) for k in range(6)]
    # Reminders exist within the planning horizon (31 days): five of the six occurrences.
    assert [(d["notificationType"], d["dueAt"]) for d in found] == [
        ("booked", iso(NOW)),
        *(("reminder", iso(s - timedelta(hours=1))) for s in starts[:5]),
    ]
    assert found[0]["instanceId"] is None  # the series itself
    masters = {d["instanceId"].split("_")[0] for d in found[1:]}
    assert len(masters) == 1
    assert [d["instanceId"].split("_")[1] for d in found[1:]] == [
        str(int(s.timestamp() * 1000)) for s in starts[:5]
    ]
    assert "Thursday, January 10, 2030" in found[2]["text"]

    # An unbounded daily series: at most MAX_OCCURRENCES occurrences.
    found = await planned(client, tenant, **times(), rrule="RRULE:FREQ=DAILY", notifications=rules)
    assert len(found) == 1 + MAX_OCCURRENCES

    # A stored series, the same as it would be planned.
    contact_id = await tenant.add_contact()
    await scenario.rules(*rules)
    series = await scenario.book(contact_id, START, rrule="RRULE:FREQ=WEEKLY;COUNT=6")
    stored = await planned(client, tenant, appointmentId=series["id"])
    assert [(d["notificationType"], d["dueAt"]) for d in stored] == [
        ("booked", iso(NOW)),
        *(("reminder", iso(s - timedelta(hours=1))) for s in starts[:5]),
    ]
    assert {d["instanceId"].split("_")[0] for d in stored[1:]} == {series["id"]}
    real = await scenario.deliveries()
    assert sorted(d["dueAt"] for d in real if d["notificationType"] == "reminder") == [
        d["dueAt"] for d in stored[1:]
    ]

    # One occurrence of it, by its instance id.
    instance = stored[2]["instanceId"]
    [one] = await planned(client, tenant, appointmentId=instance, event="rescheduled")
    assert (one["notificationType"], one["instanceId"]) == ("reminder", instance)


async def test_an_invalid_rrule_is_a_400(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await preview(client, tenant, **times(), rrule="RRULE:FREQ=HOURLY")
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["rrule"]


# --- validation ------------------------------------------------------------------------------


async def test_draft_rules_are_validated_as_a_create_validates_them(
    client: httpx.AsyncClient, tenant: Tenant, db: Database
) -> None:
    before = await counts(db)
    response = await preview(
        client,
        tenant,
        **times(),
        notifications=[rule("contact", "email", "reminder"), rule("contact", "email", "booked")],
    )
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "field": "notifications[0].beforeTime",
            "message": "needs at least one entry for a reminder notification",
        }
    ]
    response = await preview(
        client,
        tenant,
        **times(),
        notifications=[
            rule("contact", "email", "booked"),
            rule("contact", "fax", "booked"),
            rule("guest", "sms", "booked", body="{{ nope.field }}"),
        ],
    )
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["notifications[1].channel"]
    response = await preview(
        client,
        tenant,
        **times(),
        notifications=[rule("guest", "sms", "booked", body="{{ nope.field }}")],
    )
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == [
        "notifications[0].receiverType",
        "notifications[0].body",
    ]
    too_many = await preview(
        client, tenant, **times(), notifications=[rule("contact", "email", "booked")] * 51
    )
    assert too_many.status_code == 400
    assert [e["field"] for e in too_many.json()["errors"]] == ["notifications"]
    assert await counts(db) == before


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["startTime", "endTime"]),
        ({"startTime": "tomorrow", "endTime": END.isoformat()}, ["startTime"]),
        (times(START, START), ["endTime"]),
        ({**times(), "title": 5}, ["title"]),
        ({**times(), "contactId": "A" * 20}, ["contactId"]),
        ({**times(), "assignedUserId": "A" * 20}, ["assignedUserId"]),
        ({**times(), "contact": {"email": "nope", "timezone": "Mars/Base"}},
         ["contact.email", "contact.timezone"]),
        ({**times(), "contact": {"dnd": "yes"}}, ["contact.dnd"]),
        ({**times(), "contactId": "A" * 20, "contact": {}}, ["contact"]),
        ({**times(), "guests": [{"name": "x"}]}, ["guests[0]"]),
        ({**times(), "appointmentStatus": "booked"}, ["appointmentStatus"]),
        ({**times(), "event": "deleted"}, ["event"]),
    ],
)  # fmt: skip
async def test_bad_bodies_are_400s_naming_the_field(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any], fields: list[str]
) -> None:
    response = await preview(client, tenant, **body)
    assert response.status_code == 400, response.text
    assert [e["field"] for e in response.json()["errors"]] == fields


async def test_another_locations_calendar_is_not_found(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    response = await client.post(
        f"/calendars/{other_tenant.calendar_id}/notifications/preview",
        json=times(),
        headers=tenant.headers(),
    )
    assert response.status_code == 404
    assert response.json() == {
        "statusCode": 404,
        "message": "Calendar not found",
        "error": "Not Found",
    }


async def test_a_read_token_may_preview_and_a_version_is_needed(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    url = f"/calendars/{tenant.calendar_id}/notifications/preview"
    reader = await tenant.token_with("calendars/events.readonly")
    response = await client.post(url, json=times(), headers=tenant.headers(reader))
    assert response.status_code == 200, response.text
    other = await tenant.token_with("calendars.readonly")
    response = await client.post(url, json=times(), headers=tenant.headers(other))
    assert response.status_code == 401
    response = await client.post(url, json=times(), headers=tenant.headers(version=None))
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "Version"


# --- nothing stored, nothing sent, no write lock ---------------------------------------------


async def test_nothing_is_stored_or_sent(
    client: httpx.AsyncClient, tenant: Tenant, scenario: Scenario, db: Database
) -> None:
    await scenario.rules(
        rule("contact", "email", "booked"),
        rule("contact", "sms", "reminder", beforeTime=HOUR_BEFORE),
    )
    contact_id = await tenant.add_contact()
    booked = await scenario.book(contact_id, START, rrule="RRULE:FREQ=DAILY;COUNT=3")
    before = await counts(db)
    stored_deliveries = await scenario.deliveries()

    for body in (
        {**times()},
        {**times(), "contactId": contact_id, "rrule": "RRULE:FREQ=DAILY"},
        {**times(), "contact": {"email": "new@example.com"}},
        {"appointmentId": booked["id"], "event": "cancelled"},
        {"appointmentId": booked["id"], "event": "confirmed"},
    ):
        assert (await preview(client, tenant, **body)).status_code == 200

    assert await counts(db) == before
    assert await scenario.deliveries() == stored_deliveries
    # What is sent is what the booking planned, and nothing of the previews.
    await scenario.run_at(NOW)
    for day in range(3):
        await scenario.run_at(START + timedelta(days=day, hours=-1))
    sent = await scenario.outbox()
    assert sorted(m["to"] for m in sent) == ["+14155550123"] * 3 + ["rosa@example.com"]


async def test_a_preview_does_not_wait_for_the_write_lock(
    settings: Settings, db: Database, clock: ManualClock, tenant: Tenant
) -> None:
    app = create_app(settings, database=db, clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://calnotify.test") as client,
        app_write_lock(db),
    ):
        response, took = await prompt(
            preview(
                client,
                tenant,
                **times(),
                rrule="RRULE:FREQ=DAILY",
                notifications=[
                    rule("contact", "email", "booked"),
                    rule("contact", "email", "reminder", beforeTime=HOUR_BEFORE),
                ],
            )
        )
    assert response.status_code == 200, response.text
    assert took < PROMPT, took


# --- hostile templates -----------------------------------------------------------------------

HUGE_LOOP = "{% for i in (1..100000000) %}x{% endfor %}"
HEAVY = (
    "{% for i in (1..10000) %}"
    "{{ contact.name | append: i | upcase | split: '' | join: '-' }}"
    "{% endfor %}"
)


async def test_a_hostile_template_answers_promptly_with_a_render_error(
    settings: Settings, db: Database, clock: ManualClock, tenant: Tenant
) -> None:
    budget = 0.5
    app = create_app(
        settings.model_copy(update={"render_budget_seconds": budget}), database=db, clock=clock
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://calnotify.test") as client:
        started = time.monotonic()
        found = await planned(
            client,
            tenant,
            **times(),
            rrule="RRULE:FREQ=DAILY",
            notifications=[
                rule("contact", "email", "booked", body=HUGE_LOOP),
                rule("contact", "email", "reminder", beforeTime=HOUR_BEFORE, body=HEAVY),
                rule("contact", "sms", "booked", body="Hi {{contact.first_name}}"),
            ],
        )
        took = time.monotonic() - started
    # Renders start within one budget of the first, and the last has its own budget.
    assert took < 2 * budget + 2.0, took
    by_rule: dict[str, list[dict[str, Any]]] = {}
    for delivery in found:
        by_rule.setdefault(delivery["notificationId"], []).append(delivery)
    [looping] = by_rule["draft-0"]
    assert "loop" in looping["renderError"]
    assert looping["text"] is None
    assert len(by_rule["draft-1"]) == MAX_OCCURRENCES
    for heavy in by_rule["draft-1"]:
        assert heavy["renderError"], heavy
        assert heavy["text"] is None
        assert heavy["status"] == "planned"  # the plan stands; only its content failed
    [fine] = by_rule["draft-2"]
    assert fine["text"] == "Hi Sample"
    assert fine["renderError"] is None


async def test_openapi_documents_the_preview(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    operation = schema["paths"]["/calendars/{calendarId}/notifications/preview"]["post"]
    assert "calnotify" in operation["tags"]
    assert operation["operationId"] == "preview-event-notifications"
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PreviewOut"
    }
    assert "422" not in operation["responses"]
    version = next(p for p in operation["parameters"] if p["name"] == "Version")
    assert version["required"] is True
    delivery = schema["components"]["schemas"]["PreviewDeliveryOut"]["properties"]
    assert {"dueAt", "dueAtLocal", "skipReason", "renderError", "instanceId"} <= set(delivery)
