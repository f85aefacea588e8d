"""Recurring appointments (semantics §3a): series, occurrences, their notifications, and the
rolling planning horizon."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from calnotify.clock import ManualClock
from calnotify.config import Settings
from calnotify.db.engine import Database
from calnotify.ids import instance_id
from tests.conftest import NOW
from tests.engine import Scenario, ScriptedProvider
from tests.factories import Tenant

# Monday 7 January 2030, 09:00 in New York (the tenant's zone).
START = datetime(2030, 1, 7, 14, 0, tzinfo=UTC)
WEEKLY = "RRULE:FREQ=WEEKLY;COUNT=4"
BOOKED = {"receiverType": "contact", "channel": "email", "notificationType": "booked"}
REMINDER = {
    "receiverType": "contact",
    "channel": "email",
    "notificationType": "reminder",
    "beforeTime": [{"timeOffset": 1, "unit": "hours"}],
}
CANCELLATION = {**BOOKED, "notificationType": "cancellation"}
RESCHEDULE = {**BOOKED, "notificationType": "reschedule"}


async def series(scenario: Scenario, rrule: str = WEEKLY, **fields: Any) -> dict[str, Any]:
    contact = await scenario.tenant.add_contact()
    return await scenario.book(contact, START, rrule=rrule, **fields)


def occurrence_id(master: dict[str, Any], week: int) -> str:
    return instance_id(master["id"], START + timedelta(weeks=week))


async def events(scenario: Scenario, start: datetime, end: datetime) -> list[dict[str, Any]]:
    response = await scenario.client.get(
        "/calendars/events",
        params={
            "locationId": scenario.tenant.location_id,
            "calendarId": scenario.tenant.calendar_id,
            "startTime": int(start.timestamp() * 1000),
            "endTime": int(end.timestamp() * 1000),
        },
        headers=scenario.headers,
    )
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["events"]
    return found


async def event(scenario: Scenario, event_id: str) -> httpx.Response:
    return await scenario.client.get(
        f"/calendars/events/appointments/{event_id}", headers=scenario.headers
    )


def pending(deliveries: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in deliveries if d["notificationType"] == kind and d["status"] == "scheduled"]


async def test_a_series_is_booked_once_and_reminded_per_occurrence(scenario: Scenario) -> None:
    await scenario.rules(BOOKED, REMINDER)
    master = await series(scenario)
    assert (master["isRecurring"], master["rrule"]) == (True, WEEKLY)
    found = await scenario.deliveries()
    booked = [d for d in found if d["notificationType"] == "booked"]
    assert [(d["appointmentId"], d["masterEventId"]) for d in booked] == [(master["id"], "")]
    reminders = pending(found, "reminder")
    assert sorted((d["appointmentId"], d["masterEventId"], d["dueAt"]) for d in reminders) == [
        (occurrence_id(master, k), master["id"], _iso(START + timedelta(weeks=k, hours=-1)))
        for k in range(4)
    ]
    # The whole series, and one occurrence, through the deliveries API.
    assert len(await scenario.deliveries(masterEventId=master["id"])) == 5
    one = await scenario.deliveries(appointmentId=occurrence_id(master, 2))
    assert [d["notificationType"] for d in one] == ["reminder"]


async def test_the_series_id_lists_the_deliveries_of_every_occurrence(scenario: Scenario) -> None:
    await scenario.rules(BOOKED, REMINDER)
    master = await series(scenario)
    single = await scenario.book(await scenario.tenant.add_contact(), START)
    found = await scenario.deliveries(appointmentId=master["id"])
    assert sorted((d["notificationType"], d["appointmentId"]) for d in found) == sorted(
        [("booked", master["id"])] + [("reminder", occurrence_id(master, k)) for k in range(4)]
    )
    assert [d["id"] for d in found] == [
        d["id"] for d in await scenario.deliveries(masterEventId=master["id"])
    ]
    one = await scenario.deliveries(appointmentId=occurrence_id(master, 3))
    assert [(d["notificationType"], d["appointmentId"]) for d in one] == [
        ("reminder", occurrence_id(master, 3))
    ]
    # An appointment that is no series lists its own, and nothing of the series.
    alone = await scenario.deliveries(appointmentId=single["id"])
    assert sorted(d["notificationType"] for d in alone) == ["booked", "reminder"]
    assert {d["appointmentId"] for d in alone} == {single["id"]}


async def test_events_list_every_occurrence_in_the_window(scenario: Scenario) -> None:
    master = await series(scenario, "RRULE:FREQ=WEEKLY")  # unbounded
    # Far beyond the planning horizon, across the start of daylight saving time (10 March).
    found = await events(
        scenario, datetime(2030, 3, 1, tzinfo=UTC), datetime(2030, 3, 20, tzinfo=UTC)
    )
    assert [(e["id"], e["startTime"]) for e in found] == [
        (
            instance_id(master["id"], datetime(2030, 3, 4, 14, tzinfo=UTC)),
            "2030-03-04T09:00:00-05:00",
        ),
        (
            instance_id(master["id"], datetime(2030, 3, 11, 13, tzinfo=UTC)),
            "2030-03-11T09:00:00-04:00",
        ),
        (
            instance_id(master["id"], datetime(2030, 3, 18, 13, tzinfo=UTC)),
            "2030-03-18T09:00:00-04:00",
        ),
    ]
    for e in found:
        assert (e["masterEventId"], e["isRecurring"], e["rrule"]) == (
            master["id"],
            True,
            "RRULE:FREQ=WEEKLY",
        )
    # One occurrence by its instance id; the series by its master id.
    response = await event(scenario, found[1]["id"])
    assert response.status_code == 200
    assert response.json()["event"]["startTime"] == "2030-03-11T09:00:00-04:00"
    whole = (await event(scenario, master["id"])).json()["event"]
    assert (whole["id"], whole["rrule"], whole["masterEventId"]) == (
        master["id"],
        "RRULE:FREQ=WEEKLY",
        "",
    )
    # Not an occurrence: 10:00 instead of 09:00.
    wrong = instance_id(master["id"], datetime(2030, 3, 11, 14, tzinfo=UTC))
    assert (await event(scenario, wrong)).status_code == 404


async def test_moving_one_occurrence_changes_only_it(scenario: Scenario) -> None:
    await scenario.rules(REMINDER, RESCHEDULE)
    master = await series(scenario)
    moved = occurrence_id(master, 1)
    new_start = START + timedelta(weeks=1, hours=3)
    answer = await scenario.change(moved, startTime=new_start.isoformat())
    assert answer["id"] == moved  # the instance id stays when it moves
    found = await scenario.deliveries()
    assert [d["appointmentId"] for d in found if d["notificationType"] == "reschedule"] == [moved]
    reminders = {(d["appointmentId"], d["dueAt"]) for d in pending(found, "reminder")}
    assert (moved, _iso(new_start - timedelta(hours=1))) in reminders
    assert len(reminders) == 4
    # A change of the series keeps the exception's own time.
    await scenario.change(master["id"], title="Physio")
    listed = await events(scenario, START, START + timedelta(weeks=5))
    by_id = {e["id"]: e for e in listed}
    assert by_id[moved]["startTime"] == "2030-01-14T12:00:00-05:00"
    # The others follow the series; the exception keeps what it was when it was changed.
    assert {e["title"] for e in listed if e["id"] != moved} == {"Physio"}
    assert by_id[moved]["title"] == ""
    reminders = {
        (d["appointmentId"], d["dueAt"]) for d in pending(await scenario.deliveries(), "reminder")
    }
    assert (moved, _iso(new_start - timedelta(hours=1))) in reminders


async def test_cancelling_one_occurrence_or_the_series(scenario: Scenario) -> None:
    await scenario.rules(REMINDER, CANCELLATION)
    master = await series(scenario)
    one = occurrence_id(master, 2)
    await scenario.change(one, appointmentStatus="cancelled")
    found = await scenario.deliveries()
    assert [d["appointmentId"] for d in found if d["notificationType"] == "cancellation"] == [one]
    assert one not in {d["appointmentId"] for d in pending(found, "reminder")}
    assert len(pending(found, "reminder")) == 3
    # The whole series: one more cancellation, for the series; nothing is left pending.
    await scenario.change(master["id"], appointmentStatus="cancelled")
    found = await scenario.deliveries()
    cancellations = [d["appointmentId"] for d in found if d["notificationType"] == "cancellation"]
    assert sorted(cancellations) == sorted([one, master["id"]])
    assert pending(found, "reminder") == []


async def test_deleting_one_occurrence_removes_it_for_good(scenario: Scenario) -> None:
    await scenario.rules(REMINDER)
    master = await series(scenario)
    gone = occurrence_id(master, 1)
    response = await scenario.client.delete(f"/calendars/events/{gone}", headers=scenario.headers)
    assert response.status_code == 201
    again = await scenario.client.delete(f"/calendars/events/{gone}", headers=scenario.headers)
    assert again.status_code == 201  # idempotent
    assert (await event(scenario, gone)).status_code == 404
    listed = [e["id"] for e in await events(scenario, START, START + timedelta(weeks=5))]
    assert gone not in listed and len(listed) == 3
    # A change of the series does not bring it back.
    await scenario.change(master["id"], title="Still weekly")
    listed = [e["id"] for e in await events(scenario, START, START + timedelta(weeks=5))]
    assert gone not in listed
    assert gone not in {
        d["appointmentId"] for d in pending(await scenario.deliveries(), "reminder")
    }


async def test_deleting_the_series_cancels_everything(scenario: Scenario) -> None:
    await scenario.rules(REMINDER)
    master = await series(scenario)
    response = await scenario.client.delete(
        f"/calendars/events/{master['id']}", headers=scenario.headers
    )
    assert response.status_code == 201
    assert await events(scenario, START, START + timedelta(weeks=5)) == []
    found = await scenario.deliveries()
    assert pending(found, "reminder") == []
    assert {d["reason"] for d in found} == {"appointment_deleted"}


async def test_a_moved_occurrence_is_never_reminded_at_its_old_time(
    scenario: Scenario, provider: ScriptedProvider
) -> None:
    await scenario.rules(REMINDER)
    master = await series(scenario)
    old_due = START + timedelta(weeks=1, hours=-1)
    # A worker claims the old reminder; the occurrence moves meanwhile (the fence).
    scenario.clock.set(old_due)
    from calnotify.deliveries import lifecycle

    batch = await lifecycle.claim(scenario.db, old_due, 10, timedelta(minutes=1))
    assert len(batch) == 2  # the first week's (late by now) and the second's
    await scenario.change(
        occurrence_id(master, 1), startTime=(START + timedelta(weeks=2, days=1)).isoformat()
    )
    await scenario.dispatcher.record(await scenario.dispatcher.process(batch))
    moved = {d["id"]: d for d in await scenario.deliveries()}[batch[1].id]
    assert (moved["status"], moved["reason"]) == ("skipped", "stale")
    assert all(m.delivery_id != batch[1].id for m in provider.sent)


async def test_the_series_invitation_carries_its_rule_and_one_change_its_occurrence(
    scenario: Scenario, provider: ScriptedProvider
) -> None:
    await scenario.rules(BOOKED, RESCHEDULE)
    master = await series(scenario, "RRULE:FREQ=WEEKLY;COUNT=4\nEXDATE:20300121T140000Z")
    await scenario.change(
        occurrence_id(master, 1), startTime=(START + timedelta(weeks=1, hours=2)).isoformat()
    )
    await scenario.dispatcher.drain()
    invites = {m.notification_type: m.attachments[0].data.decode() for m in provider.sent}
    assert "RRULE:FREQ=WEEKLY;COUNT=4" in invites["booked"]
    assert "EXDATE:20300121T140000Z" in invites["booked"]
    assert f"UID:{master['id']}@" in invites["booked"]
    change = invites["reschedule"]
    assert f"UID:{master['id']}@" in change
    assert "RECURRENCE-ID:20300114T140000Z" in change
    assert "RRULE" not in change


@pytest.mark.parametrize(
    ("rrule", "problem"),
    [
        ("RRULE:FREQ=HOURLY", "FREQ must be one of"),
        ("RRULE:FREQ=WEEKLY;COUNT=0", "COUNT must be"),
        ("RRULE:FREQ=WEEKLY;FOO=1", "unsupported part"),
        ("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", "no occurrence"),
        ("RRULE:FREQ=DAILY;UNTIL=20200101", "no occurrence"),
        ("RRULE:FREQ=WEEKLY;COUNT=2;UNTIL=20310101", "not both"),
        ("EXDATE:20300107T140000Z", "needs an RRULE"),
    ],
)
async def test_a_rule_that_cannot_be_served_is_a_400_naming_rrule(
    scenario: Scenario, rrule: str, problem: str
) -> None:
    contact = await scenario.tenant.add_contact()
    began = time.monotonic()
    response = await scenario.client.post(
        "/calendars/events/appointments",
        json={
            "calendarId": scenario.tenant.calendar_id,
            "locationId": scenario.tenant.location_id,
            "contactId": contact,
            "startTime": START.isoformat(),
            "rrule": rrule,
        },
        headers=scenario.headers,
    )
    # Refused before any expansion: a rule that could not be served never spins (the bound
    # is loose; a loaded machine answers the first request of a process slowly).
    assert time.monotonic() - began < 10
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "rrule"
    assert problem in response.json()["message"]


async def test_an_unbounded_series_is_planned_within_a_rolling_horizon(scenario: Scenario) -> None:
    await scenario.rules(REMINDER)
    master = await series(scenario, "RRULE:FREQ=DAILY")
    horizon = NOW + timedelta(days=31)
    dues = sorted(d["dueAt"] for d in pending(await scenario.deliveries(), "reminder"))
    assert dues[0] == _iso(START - timedelta(hours=1))
    assert dues[-1] <= _iso(horizon)
    assert len(dues) == (horizon - (START - timedelta(hours=1))).days + 1
    # Ten days later the horizon has moved by itself, once, whoever looks.
    scenario.clock.set(NOW + timedelta(days=10))
    await scenario.dispatcher.plan_once()
    await scenario.dispatcher.plan_once()
    other = Scenario(
        scenario.client, scenario.tenant, scenario.clock, scenario.db, scenario.settings
    )
    await other.dispatcher.plan_once()
    found = await scenario.deliveries(masterEventId=master["id"])
    keys = [(d["appointmentId"], d["dueAt"]) for d in found]
    assert len(keys) == len(set(keys))  # never twice
    later = sorted(d["dueAt"] for d in found)
    assert later[-1] > _iso(horizon + timedelta(days=9))
    assert later[-1] <= _iso(horizon + timedelta(days=10))


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


async def test_an_occurrence_reminder_lands_in_the_outbox_under_its_instance_id(
    client: httpx.AsyncClient, tenant: Tenant, clock: ManualClock, db: Database, settings: Settings
) -> None:
    scenario = Scenario(client, tenant, clock, db, settings)  # email goes to the outbox
    await scenario.rules(REMINDER)
    master = await series(scenario)
    second = occurrence_id(master, 1)
    await scenario.run_at(START + timedelta(weeks=1, hours=-1))
    [message] = await scenario.outbox(appointmentId=second)
    assert message["appointmentId"] == second
