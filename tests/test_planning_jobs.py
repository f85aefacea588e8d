"""Re-planning big calendars in the background: the request does one page, a durable job
the rest; nothing stale is sent and nothing is lost while it runs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from calnotify.clock import ManualClock
from calnotify.config import Settings
from calnotify.db.engine import Database
from calnotify.models import PlanningJob
from calnotify.planning import jobs
from tests.conftest import NOW
from tests.engine import Scenario
from tests.factories import Tenant

START = NOW + timedelta(days=2)
APPOINTMENTS = 10
PAGE = 3
REMINDER = {
    "receiverType": "contact",
    "channel": "email",
    "notificationType": "reminder",
    "beforeTime": [{"timeOffset": 1, "unit": "hours"}],
}


@pytest.fixture
def scenario(
    client: httpx.AsyncClient,
    tenant: Tenant,
    clock: ManualClock,
    db: Database,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> Scenario:
    monkeypatch.setattr(jobs, "PAGE", PAGE)
    return Scenario(client, tenant, clock, db, settings)


async def book_calendar(scenario: Scenario) -> list[dict[str, Any]]:
    contact = await scenario.tenant.add_contact()
    return [await scenario.book(contact, START + timedelta(hours=i)) for i in range(APPOINTMENTS)]


async def planning(scenario: Scenario, rule_id: str) -> dict[str, Any]:
    response = await scenario.client.get(
        f"/calendars/{scenario.tenant.calendar_id}/notifications/{rule_id}/planning",
        headers=scenario.headers,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def reminders(scenario: Scenario) -> list[dict[str, Any]]:
    return [d for d in await scenario.deliveries() if d["notificationType"] == "reminder"]


async def finish_jobs(scenario: Scenario) -> int:
    pages = 0
    while done := await scenario.dispatcher.plan_once(pages=1):
        pages += done
    return pages


async def test_a_new_rule_plans_one_page_now_and_the_rest_in_the_background(
    scenario: Scenario,
) -> None:
    booked = await book_calendar(scenario)
    [rule] = await scenario.rules(REMINDER)
    first = {d["appointmentId"] for d in await reminders(scenario)}
    # The earliest appointments first: their reminders come due first.
    assert first == {a["id"] for a in booked[:PAGE]}
    state = await planning(scenario, rule["_id"])
    assert state["state"] == "planning"
    assert [(j["kind"], j["status"]) for j in state["jobs"]] == [("rule", "pending")]

    assert await finish_jobs(scenario) == 3  # pages 2-4 of 10 appointments, 3 a page
    planned = await reminders(scenario)
    assert sorted(d["appointmentId"] for d in planned) == sorted(a["id"] for a in booked)
    assert {d["status"] for d in planned} == {"scheduled"}
    state = await planning(scenario, rule["_id"])
    assert state["state"] == "planned"
    [job] = state["jobs"]
    assert (job["status"], job["pages"], job["items"]) == ("done", 4, APPOINTMENTS)
    assert job["finishedAt"] is not None


async def test_a_reminder_due_before_its_page_waits_for_it_and_is_not_lost(
    scenario: Scenario,
) -> None:
    booked = await book_calendar(scenario)
    [rule] = await scenario.rules(REMINDER)
    await finish_jobs(scenario)
    # A second reminder an hour earlier: the 1-hour ones stay wanted. Only the first
    # page is re-planned by the request.
    await scenario.update_rule(
        rule["_id"],
        beforeTime=[{"timeOffset": 1, "unit": "hours"}, {"timeOffset": 2, "unit": "hours"}],
    )
    assert (await planning(scenario, rule["_id"]))["state"] == "planning"
    last = START + timedelta(hours=APPOINTMENTS - 1)
    # The last appointment's 1-hour reminder comes due before the job reached its page.
    scenario.clock.set(last - timedelta(hours=1))
    assert await scenario.dispatcher.run_once() > 0
    waiting = [d for d in await reminders(scenario) if d["dueAt"].startswith(_iso(last, 1))]
    assert [(d["status"], d["attempts"]) for d in waiting] == [("scheduled", 0)]
    # The job re-stamps it; then it goes out, a second late.
    await finish_jobs(scenario)
    scenario.clock.advance(seconds=2)
    await scenario.dispatcher.drain()
    [sent] = [d for d in await reminders(scenario) if d["id"] == waiting[0]["id"]]
    assert sent["status"] == "sent"
    assert {d["status"] for d in await reminders(scenario)} >= {"sent", "skipped"}
    # Only the appointment that had started when the job ran (its reminder could not go
    # out any more) is left to the fence; every other one was kept or planned anew.
    started = booked[APPOINTMENTS - 2]["id"]
    stale = [d for d in await reminders(scenario) if d["reason"] == "stale"]
    assert {d["appointmentId"] for d in stale} <= {started}


async def test_deleting_a_rule_cancels_in_pages_and_sends_nothing_meanwhile(
    scenario: Scenario,
) -> None:
    await book_calendar(scenario)
    [rule] = await scenario.rules(REMINDER)
    await finish_jobs(scenario)
    response = await scenario.client.delete(
        f"/calendars/{scenario.tenant.calendar_id}/notifications/{rule['_id']}",
        headers=scenario.headers,
    )
    assert response.status_code == 200
    statuses = [d["status"] for d in await reminders(scenario)]
    assert statuses.count("cancelled") == PAGE
    # Whatever comes due before the job is done is not sent (the rule is deleted).
    scenario.clock.set(START)
    await scenario.dispatcher.run_once()
    assert "sent" not in {d["status"] for d in await reminders(scenario)}
    await scenario.dispatcher.drain()
    found = {(d["status"], d["reason"]) for d in await reminders(scenario)}
    assert found <= {("cancelled", "rule_deleted"), ("skipped", "inactive")}


async def test_deleting_a_calendar_cancels_in_pages(scenario: Scenario) -> None:
    await scenario.rules(REMINDER)
    await book_calendar(scenario)
    response = await scenario.client.delete(
        f"/calendars/{scenario.tenant.calendar_id}", headers=scenario.headers
    )
    assert response.status_code == 200
    await finish_jobs(scenario)
    found = {(d["status"], d["reason"]) for d in await reminders(scenario)}
    assert found == {("cancelled", "calendar_deleted")}


async def test_a_job_resumes_where_its_last_page_ended(scenario: Scenario) -> None:
    """Another process picks the job up after the first one stopped: nothing twice."""
    booked = await book_calendar(scenario)
    await scenario.rules(REMINDER)
    assert await scenario.dispatcher.plan_once(pages=1) == 1
    async with scenario.db.session(write=False) as session:
        [job] = (await session.scalars(select(PlanningJob))).all()
        assert (job.pages, job.items, job.status) == (2, 2 * PAGE, "pending")
        assert job.cursor
    other = Scenario(
        scenario.client, scenario.tenant, scenario.clock, scenario.db, scenario.settings
    )
    await finish_jobs(other)
    planned = await reminders(scenario)
    assert sorted(d["appointmentId"] for d in planned) == sorted(a["id"] for a in booked)


async def test_a_newer_change_supersedes_the_running_job(scenario: Scenario) -> None:
    await book_calendar(scenario)
    [rule] = await scenario.rules(REMINDER)
    await scenario.update_rule(rule["_id"], beforeTime=[{"timeOffset": 3, "unit": "hours"}])
    state = await planning(scenario, rule["_id"])
    assert [j["status"] for j in state["jobs"]] == ["pending", "superseded"]
    await finish_jobs(scenario)
    pending = [d for d in await reminders(scenario) if d["status"] == "scheduled"]
    assert len(pending) == APPOINTMENTS
    assert all(d["dueAt"].endswith(":00:00.000Z") for d in pending)
    due = {d["appointmentId"]: d["dueAt"] for d in pending}
    assert len(due) == APPOINTMENTS


async def test_a_wording_edit_changes_nothing_planned(scenario: Scenario) -> None:
    await book_calendar(scenario)
    [rule] = await scenario.rules(REMINDER)
    await finish_jobs(scenario)
    before = {d["id"]: d["status"] for d in await reminders(scenario)}
    await scenario.update_rule(rule["_id"], subject="Bring your card, {{contact.first_name}}")
    state = await planning(scenario, rule["_id"])
    assert state["state"] == "planned"
    assert len(state["jobs"]) == 1  # no new job
    assert {d["id"]: d["status"] for d in await reminders(scenario)} == before


def _iso(start: Any, hours: int) -> str:
    return (start - timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M")
