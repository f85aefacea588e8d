"""Signed action links and the appointment page (docs/semantics.md §8, "Links", "The page"):
the links in a sent message, what the page shows, each action through the appointment
service (and the rules it fires), and every way a link stops working."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from calnotify.actions import tokens
from calnotify.actions.keys import LinkKeys, read_keys, rotate
from calnotify.app import create_app
from calnotify.clock import ManualClock
from calnotify.config import Settings
from calnotify.db.engine import Database
from calnotify.models import AppointmentEvent
from tests.conftest import NOW
from tests.engine import Scenario
from tests.processes import calnotify
from tests.test_console import signed_in, text_of

# NOW is Tuesday 2030-01-01 12:00 UTC; the location is in New York.
START = NOW + timedelta(days=1, hours=3)  # Wednesday 10:00 in New York
LINKS = (
    "C {{appointment.confirmation_link}} X {{appointment.cancellation_link}} "
    "R {{appointment.reschedule_link}}"
)
WEEKDAYS_9_TO_5 = [
    {
        "daysOfTheWeek": [1, 2, 3, 4, 5],
        "hours": [{"openHour": 9, "openMinute": 0, "closeHour": 17, "closeMinute": 0}],
    }
]
_LINK = re.compile(r"(http://localhost:8000/a/([A-Za-z0-9_-]+))(\?do=\w+)?")


def rule(kind: str, **fields: Any) -> dict[str, Any]:
    return {"receiverType": "contact", "channel": "email", "notificationType": kind, **fields}


async def set_calendar(scenario: Scenario, **calendar: Any) -> None:
    response = await scenario.client.put(
        f"/calendars/{scenario.tenant.calendar_id}",
        json={"openHours": WEEKDAYS_9_TO_5, "slotDuration": 30, **calendar},
        headers=scenario.headers,
    )
    assert response.status_code == 200, response.text


async def calendar_rules(scenario: Scenario) -> None:
    """The rules every test uses: each immediate type sends an email with the links."""
    await set_calendar(scenario)
    await scenario.rules(
        *(
            rule(kind, subject=kind, body=f"{kind}: {LINKS}")
            for kind in ("booked", "confirmation", "cancellation", "reschedule")
        ),
        rule("reminder", beforeTime=[{"timeOffset": 1, "unit": "hours"}]),
    )


async def booked_links(scenario: Scenario, **calendar: Any) -> tuple[dict[str, Any], list[str]]:
    """An appointment booked and its booked email sent; the email's three links (then the
    calendar changed by ``calendar``)."""
    await calendar_rules(scenario)
    contact = await scenario.tenant.add_contact(timezone="America/Chicago")
    booked = await scenario.book(contact, START)
    await scenario.dispatcher.drain()
    if calendar:
        await set_calendar(scenario, **calendar)
    return booked, links_in(sent_of(scenario, "booked")[-1].body)


def sent_of(scenario: Scenario, kind: str) -> list[Any]:
    assert scenario.provider is not None
    return [m for m in scenario.provider.sent if m.notification_type == kind]


def links_in(body: str) -> list[str]:
    return ["".join(filter(None, (m.group(1), m.group(3)))) for m in _LINK.finditer(body)]


def path_of(link: str) -> str:
    return link.removeprefix("http://localhost:8000")


def token_of(link: str) -> str:
    match = _LINK.match(link)
    assert match is not None
    return match.group(2)


async def appointment(scenario: Scenario, event_id: str) -> dict[str, Any]:
    response = await scenario.client.get(
        f"/calendars/events/appointments/{event_id}", headers=scenario.headers
    )
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()["event"]
    return found


async def events_of(db: Database, appointment_id: str) -> list[AppointmentEvent]:
    async with db.session(write=False) as session:
        rows = await session.scalars(
            select(AppointmentEvent)
            .where(AppointmentEvent.appointment_id == appointment_id)
            .order_by(AppointmentEvent.id)
        )
        return list(rows)


def version_in(html: str) -> str:
    match = re.search(r'name="version" value="(\d+)"', html)
    assert match is not None, html
    return match.group(1)


async def post(scenario: Scenario, link: str, action: str, **form: str) -> httpx.Response:
    return await scenario.client.post(f"{path_of(link).split('?')[0]}/{action}", data=form)


# --- the links in a message -----------------------------------------------------------------


async def test_a_sent_email_has_the_three_links_and_each_opens_the_page(
    scenario: Scenario,
) -> None:
    booked, links = await booked_links(scenario)
    confirm, cancel, reschedule = links
    token = token_of(confirm)
    assert len(token) <= 60 and re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert cancel == f"{confirm}?do=cancel" and reschedule == f"{confirm}?do=reschedule"
    for link in links:
        response = await scenario.client.get(path_of(link))
        assert response.status_code == 200, response.text
        page = response.text
        assert "Acme Dental" in page and "Hi Rosa" in page
        assert "Wednesday, January 2, 2030 9:00 AM" in page  # in the contact's zone (Chicago)
        assert "America/Chicago" in page and "30 minutes" in page
        assert "Diaz" not in page and "rosa@example.com" not in page  # nothing else personal
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"] == "no-store"
    assert (await scenario.client.head(path_of(confirm))).status_code == 200
    # A GET changes nothing (mail scanners fetch links).
    assert (await appointment(scenario, booked["id"]))["appointmentStatus"] == "new"
    assert [e.kind for e in await events_of(scenario.db, booked["id"])] == ["created"]


async def test_the_cancel_link_opens_the_cancel_form_and_reschedule_lists_free_slots(
    scenario: Scenario,
) -> None:
    _, (confirm, cancel, reschedule) = await booked_links(scenario)
    assert "<details open>" not in (await scenario.client.get(path_of(confirm))).text
    assert "<details open>" in (await scenario.client.get(path_of(cancel))).text
    page = (await scenario.client.get(path_of(reschedule))).text
    # Slots in the contact's zone: New York's 09:00 opening is 08:00 in Chicago.
    assert 'value="2030-01-03T08:00:00-06:00"' in page
    assert 'value="2030-01-02T09:00:00-06:00"' not in page  # its own time


# --- actions --------------------------------------------------------------------------------


async def test_confirm_confirms_and_fires_the_confirmation_rule(scenario: Scenario) -> None:
    booked, (confirm, _, _) = await booked_links(scenario)
    version = version_in((await scenario.client.get(path_of(confirm))).text)
    response = await post(scenario, confirm, "confirm", version=version)
    assert response.status_code == 303
    assert response.headers["location"] == f"{path_of(confirm)}?done=confirmed"
    assert (await appointment(scenario, booked["id"]))["appointmentStatus"] == "confirmed"
    shown = (await scenario.client.get(response.headers["location"])).text
    assert "your appointment is confirmed" in shown and "Confirm I will come" not in shown
    await scenario.dispatcher.drain()
    [sent] = sent_of(scenario, "confirmation")
    assert "/a/" in sent.body
    last = (await events_of(scenario.db, booked["id"]))[-1]
    assert (last.kind, last.source, last.channel) == ("status_changed", "contact", "email")


async def test_the_console_shows_each_change_with_who_made_it(scenario: Scenario) -> None:
    booked, (confirm, _, _) = await booked_links(scenario)
    version = version_in((await scenario.client.get(path_of(confirm))).text)
    assert (await post(scenario, confirm, "confirm", version=version)).status_code == 303
    await signed_in(scenario.client, scenario.tenant)
    page = await scenario.client.get(f"/console/appointments/{booked['id']}")
    assert page.status_code == 200
    shown = text_of(page.text)
    assert "Booked" in shown and "through the API" in shown
    assert "Status changed to confirmed" in shown
    assert "by the contact, from the email link" in shown
    form = await scenario.client.get(f"/console/calendars/{scenario.tenant.calendar_id}/rules/new")
    assert "{{appointment.confirmation_link}}" in form.text


async def test_the_health_page_shows_the_confirmation_rate_per_calendar(
    scenario: Scenario,
) -> None:
    booked, (confirm, _, _) = await booked_links(scenario)
    other = await scenario.book(booked["contactId"], START + timedelta(minutes=30))
    version = version_in((await scenario.client.get(path_of(confirm))).text)
    assert (await post(scenario, confirm, "confirm", version=version)).status_code == 303
    await scenario.run_at(START - timedelta(minutes=15))  # both reminders go out
    reminders = [d for d in await scenario.deliveries() if d["notificationType"] == "reminder"]
    assert {d["appointmentId"] for d in reminders if d["status"] == "sent"} == {
        booked["id"],
        other["id"],
    }
    await signed_in(scenario.client, scenario.tenant)
    shown = text_of((await scenario.client.get("/console/health")).text)
    assert "Acme Dental calendar 2 1 50%" in shown


async def test_cancel_with_a_reason_cancels_the_reminders_and_sends_the_cancellation(
    scenario: Scenario,
) -> None:
    booked, (_, cancel, _) = await booked_links(scenario)
    version = version_in((await scenario.client.get(path_of(cancel))).text)
    response = await post(scenario, cancel, "cancel", version=version, reason="  Car broke down ")
    assert response.status_code == 303
    event = await appointment(scenario, booked["id"])
    assert event["appointmentStatus"] == "cancelled"
    assert "Cancellation reason: Car broke down" in event["notes"]
    await scenario.dispatcher.drain()
    assert len(sent_of(scenario, "cancellation")) == 1
    statuses = {d["notificationType"]: d["status"] for d in await scenario.deliveries()}
    assert statuses["reminder"] == "cancelled"
    shown = (await scenario.client.get(path_of(cancel))).text
    assert "This appointment is cancelled." in shown and "<form" not in shown
    last = (await events_of(scenario.db, booked["id"]))[-1]
    assert (last.source, last.channel) == ("contact", "email")


async def test_reschedule_moves_to_a_free_slot_and_sends_the_reschedule(
    scenario: Scenario,
) -> None:
    booked, (_, _, reschedule) = await booked_links(scenario)
    page = (await scenario.client.get(path_of(reschedule))).text
    slot = "2030-01-03T08:00:00-06:00"
    assert f'value="{slot}"' in page
    response = await post(scenario, reschedule, "reschedule", version=version_in(page), slot=slot)
    assert response.status_code == 303, response.text
    event = await appointment(scenario, booked["id"])
    assert event["id"] == booked["id"]
    assert (event["startTime"], event["endTime"]) == (
        "2030-01-03T09:00:00-05:00",
        "2030-01-03T09:30:00-05:00",
    )
    old_link = (await scenario.client.get(path_of(reschedule).split("?")[0])).text
    assert "This appointment has been moved" in old_link
    assert "Thursday, January 3, 2030 8:00 AM" in old_link
    await scenario.dispatcher.drain()
    [sent] = sent_of(scenario, "reschedule")
    assert "/a/" in sent.body
    reminders = [d for d in await scenario.deliveries() if d["notificationType"] == "reminder"]
    assert sorted(d["status"] for d in reminders) == ["cancelled", "scheduled"]
    last = (await events_of(scenario.db, booked["id"]))[-1]
    assert (last.kind, last.source, last.channel) == ("rescheduled", "contact", "email")


async def test_a_slot_that_is_not_free_is_refused(scenario: Scenario) -> None:
    booked, (_, _, reschedule) = await booked_links(scenario)
    version = version_in((await scenario.client.get(path_of(reschedule))).text)
    for slot in ("2030-01-03T08:10:00-06:00", "2030-01-05T08:00:00-06:00", "soon", ""):
        response = await post(scenario, reschedule, "reschedule", version=version, slot=slot)
        assert response.status_code == 409, slot
        assert "That time is no longer free" in response.text
    assert (await appointment(scenario, booked["id"]))["startTime"] == "2030-01-02T10:00:00-05:00"


async def test_two_tabs_racing_change_it_once(scenario: Scenario) -> None:
    booked, (confirm, _, _) = await booked_links(scenario)
    version = version_in((await scenario.client.get(path_of(confirm))).text)
    assert (await post(scenario, confirm, "cancel", version=version)).status_code == 303
    second = await post(scenario, confirm, "confirm", version=version)
    assert second.status_code == 409
    assert "changed since the page was opened" in second.text
    assert "This appointment is cancelled." in second.text
    assert (await appointment(scenario, booked["id"]))["appointmentStatus"] == "cancelled"
    changes = [e for e in await events_of(scenario.db, booked["id"]) if e.kind != "created"]
    assert len(changes) == 1


async def test_a_reason_over_500_characters_is_refused(scenario: Scenario) -> None:
    booked, (_, cancel, _) = await booked_links(scenario)
    version = version_in((await scenario.client.get(path_of(cancel))).text)
    response = await post(scenario, cancel, "cancel", version=version, reason="x" * 501)
    assert response.status_code == 400
    assert "at most 500 characters" in response.text
    assert (await appointment(scenario, booked["id"]))["appointmentStatus"] == "new"


async def test_bad_forms_are_4xx(scenario: Scenario) -> None:
    _, (confirm, _, _) = await booked_links(scenario)
    base = path_of(confirm)
    assert (await scenario.client.post(f"{base}/confirm", data={"x": "1"})).status_code == 409
    assert (await scenario.client.post(f"{base}/confirm")).status_code == 400
    response = await scenario.client.post(f"{base}/confirm", json={"version": "1"})
    assert response.status_code == 400
    assert (await scenario.client.post(f"{base}/explode", data={})).status_code == 404


# --- policy ---------------------------------------------------------------------------------


async def test_a_calendar_that_allows_neither_offers_only_confirm_and_the_phone(
    scenario: Scenario,
) -> None:
    booked, (confirm, _, _) = await booked_links(
        scenario, allowCancellation=False, allowReschedule=False
    )
    page = (await scenario.client.get(path_of(confirm))).text
    assert "Confirm I will come" in page
    assert "Cancel my appointment" not in page and "Choose another time" not in page
    assert "cannot be cancelled or changed online" in page
    response = await post(scenario, confirm, "cancel", version=version_in(page))
    assert response.status_code == 409
    assert (await appointment(scenario, booked["id"]))["appointmentStatus"] == "new"


async def test_inside_the_minimum_notice_cancel_is_refused(scenario: Scenario) -> None:
    booked, (confirm, _, _) = await booked_links(
        scenario, allowBookingAfter=2, allowBookingAfterUnit="days"
    )
    page = (await scenario.client.get(path_of(confirm))).text
    assert "too close to the appointment to cancel or change it online" in page
    response = await post(scenario, confirm, "cancel", version=version_in(page))
    assert response.status_code == 409
    assert (await appointment(scenario, booked["id"]))["appointmentStatus"] == "new"


async def test_a_past_appointment_shows_its_state_and_no_actions(scenario: Scenario) -> None:
    _, (confirm, _, _) = await booked_links(scenario)
    scenario.clock.set(START + timedelta(hours=1))
    page = await scenario.client.get(path_of(confirm))
    assert page.status_code == 200
    assert "This appointment has passed." in page.text and "<form" not in page.text


# --- links that do not work -----------------------------------------------------------------


async def test_a_tampered_link_is_a_404_that_reveals_nothing(scenario: Scenario) -> None:
    _, (confirm, _, _) = await booked_links(scenario)
    token = token_of(confirm)
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    for bad in (flipped, token[:-1], token + "A", "x" * 44, "preview2", "a.b"):
        response = await scenario.client.get(f"/a/{bad}")
        assert response.status_code == 404, bad
        assert "This link does not work" in response.text
        assert "Acme" not in response.text


async def test_a_link_of_another_appointment_is_a_404(scenario: Scenario) -> None:
    first, (confirm, _, _) = await booked_links(scenario)
    other = await scenario.book(first["contactId"], START + timedelta(days=1))
    parsed = tokens.parse(token_of(confirm))
    assert parsed is not None
    # The first link's MAC with the other appointment's id.
    swapped = tokens.sign(tokens.Key(parsed.key_byte, b"guess"), other["id"], "", "email")
    forged = swapped[:22] + token_of(confirm)[22:]
    assert (await scenario.client.get(f"/a/{forged}")).status_code == 404


async def test_a_link_for_another_contact_does_not_verify(scenario: Scenario) -> None:
    first, (confirm, _, _) = await booked_links(scenario)
    keys = await read_keys(scenario.db, NOW, timedelta(days=30))
    parsed = tokens.parse(token_of(confirm))
    assert parsed is not None
    assert tokens.verified(parsed, keys, first["contactId"])
    assert not tokens.verified(parsed, keys, "someoneElse000000000")


async def test_a_link_expires_a_day_after_the_appointment_ends(scenario: Scenario) -> None:
    _, (confirm, _, _) = await booked_links(scenario)
    end = START + timedelta(minutes=30)
    scenario.clock.set(end + timedelta(days=1) - timedelta(seconds=1))
    assert (await scenario.client.get(path_of(confirm))).status_code == 200
    scenario.clock.set(end + timedelta(days=1))
    assert (await scenario.client.get(path_of(confirm))).status_code == 404


async def test_a_deleted_appointments_link_is_a_404(scenario: Scenario) -> None:
    booked, (confirm, _, _) = await booked_links(scenario)
    await scenario.delete(booked["id"])
    assert (await scenario.client.get(path_of(confirm))).status_code == 404


# --- the secret -----------------------------------------------------------------------------


@pytest.fixture
async def strict_client(
    settings: Settings, db: Database, clock: ManualClock
) -> AsyncIterator[httpx.AsyncClient]:
    """The API with no grace for rotated secrets, re-reading them on every request."""
    strict = Settings(database_url=settings.database_url, link_secret_grace_days=0)
    app = create_app(strict, database=db, clock=clock)
    app.state.link_keys = LinkKeys(timedelta(0), refresh=0)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://calnotify.test") as c:
        yield c


async def test_after_a_rotation_old_links_work_for_the_grace_and_new_ones_use_the_new_secret(
    scenario: Scenario, strict_client: httpx.AsyncClient
) -> None:
    booked, (old, _, _) = await booked_links(scenario)
    new_id = await rotate(scenario.db, NOW)
    # The default grace (30 days): the old link still opens the page.
    assert (await scenario.client.get(path_of(old))).status_code == 200
    # No grace: it no longer does.
    assert (await strict_client.get(path_of(old))).status_code == 404
    # Messages sent from now on carry links of the new secret, which work everywhere.
    scenario.dispatcher.executor.links.refresh = 0
    await scenario.change(booked["id"], appointmentStatus="confirmed")
    await scenario.dispatcher.drain()
    new = links_in(sent_of(scenario, "confirmation")[-1].body)[0]
    parsed = tokens.parse(token_of(new))
    assert parsed is not None and parsed.key_byte == new_id % 256
    assert (await strict_client.get(path_of(new))).status_code == 200
    assert (await scenario.client.get(path_of(new))).status_code == 200


# --- previews, limits -----------------------------------------------------------------------


async def test_a_preview_carries_a_sample_link_that_does_nothing(scenario: Scenario) -> None:
    await calendar_rules(scenario)
    contact = await scenario.tenant.add_contact()
    response = await scenario.client.post(
        f"/calendars/{scenario.tenant.calendar_id}/notifications/preview",
        json={
            "contactId": contact,
            "startTime": START.isoformat(),
            "endTime": (START + timedelta(minutes=30)).isoformat(),
        },
        headers=scenario.headers,
    )
    assert response.status_code == 200, response.text
    assert "http://localhost:8000/a/preview?do=cancel" in response.text
    page = await scenario.client.get("/a/preview")
    assert page.status_code == 200 and "This is a preview" in page.text
    assert (await scenario.client.post("/a/preview/cancel", data={})).status_code == 200


async def test_requests_per_link_are_rate_limited(
    settings: Settings, db: Database, clock: ManualClock
) -> None:
    limited = Settings(database_url=settings.database_url, link_requests_per_minute=3)
    app = create_app(limited, database=db, clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://calnotify.test") as c:
        statuses = [(await c.get("/a/" + "x" * 44)).status_code for _ in range(4)]
        assert statuses == [404, 404, 404, 429]
        # Another link from the same address is limited too.
        answer = await c.get("/a/" + "y" * 44)
        assert answer.status_code == 429 and answer.headers["retry-after"] == "60"


def test_tokens_are_short_and_round_trip() -> None:
    key = tokens.Key(300, b"k" * 32)
    token = tokens.sign(key, "AbCdEfGhIjKlMnOpQrSt", "contact0000000000000", "whatsapp")
    assert len(token) == tokens.TOKEN_LENGTH <= 60
    parsed = tokens.parse(token)
    assert parsed is not None
    assert (parsed.appointment_id, parsed.channel, parsed.key_byte) == (
        "AbCdEfGhIjKlMnOpQrSt",
        "whatsapp",
        300 % 256,
    )
    assert tokens.verified(parsed, (key,), "contact0000000000000")
    assert not tokens.verified(parsed, (tokens.Key(300, b"j" * 32),), "contact0000000000000")
    assert tokens.parse("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz") is None


async def test_calnotify_secrets_rotate(database_url: str, db: Database) -> None:
    first = await read_keys(db, NOW, timedelta(days=30))
    rotated = calnotify(database_url, "secrets", "rotate")
    assert set(rotated) == {"id", "previousLinksValidUntil"}
    now = datetime.now(UTC)
    keys = await read_keys(db, now, timedelta(days=30))
    assert [k.id for k in keys] == [rotated["id"], first[0].id]  # the new one signs
    assert [k.id for k in await read_keys(db, now + timedelta(days=31), timedelta(days=30))] == [
        rotated["id"]
    ]


async def test_read_keys_makes_the_first_secret_once(db: Database) -> None:
    first = await read_keys(db, NOW, timedelta(days=1))
    again = await read_keys(db, NOW, timedelta(days=1))
    assert len(first) == 1 and first == again
