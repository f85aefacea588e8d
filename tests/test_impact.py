"""What saving a rule would do to pending sends, before it is saved: counted and shown
without writing, and what saving then does (docs/api.md "Rule impact")."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from calnotify.notifications import impact as impact_module
from tests.conftest import NOW
from tests.engine import Scenario
from tests.factories import Tenant

START = NOW + timedelta(days=2)
REMINDER = {
    "receiverType": "contact",
    "channel": "email",
    "notificationType": "reminder",
    "beforeTime": [{"timeOffset": 1, "unit": "hours"}],
}


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def three_reminders(scenario: Scenario) -> tuple[str, list[dict[str, Any]]]:
    contact = await scenario.tenant.add_contact()
    booked = [await scenario.book(contact, START + timedelta(hours=i)) for i in range(3)]
    [rule] = await scenario.rules(REMINDER)
    return rule["_id"], booked


async def impact(scenario: Scenario, path: str, body: Any) -> dict[str, Any]:
    response = await scenario.client.post(
        f"/calendars/{scenario.tenant.calendar_id}/notifications{path}",
        json=body,
        headers=scenario.headers,
    )
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def scheduled(scenario: Scenario) -> set[tuple[str, datetime]]:
    return {
        (d["appointmentId"], instant(d["dueAt"]))
        for d in await scenario.deliveries(status="scheduled")
    }


async def test_lengthening_a_reminder_shows_the_new_due_times_and_saving_plans_them(
    scenario: Scenario,
) -> None:
    rule_id, booked = await three_reminders(scenario)
    before = await scenario.deliveries()
    longer = {"beforeTime": [{"timeOffset": 2, "unit": "hours"}]}

    found = await impact(scenario, f"/{rule_id}/impact", longer)

    assert await scenario.deliveries() == before  # nothing changed
    assert found["cancelled"] == {"count": 0, "first": []}
    assert found["planned"] == {"count": 0, "first": []}
    assert found["retimed"]["count"] == 3
    assert (found["complete"], found["checkedUntil"], found["pendingOfRule"]) == (True, None, 3)
    shown = [
        (c["appointmentId"], instant(c["oldDueAt"]), instant(c["newDueAt"]), c["recipient"])
        for c in found["retimed"]["first"]
    ]
    assert shown == [
        (
            a["id"],
            START + timedelta(hours=i - 1),
            START + timedelta(hours=i - 2),
            "rosa@example.com",
        )
        for i, a in enumerate(booked)
    ]

    await scenario.update_rule(rule_id, **longer)
    assert await scheduled(scenario) == {(a, new) for a, _, new, _ in shown}


async def test_a_new_rule_and_a_delete_show_what_they_plan_and_cancel(
    scenario: Scenario,
) -> None:
    rule_id, booked = await three_reminders(scenario)
    day_before = {**REMINDER, "beforeTime": [{"timeOffset": 1, "unit": "days"}]}

    created = await impact(scenario, "/impact", [day_before])
    assert created["planned"]["count"] == 3
    assert created["cancelled"]["count"] == created["retimed"]["count"] == 0
    planned = {(c["appointmentId"], instant(c["newDueAt"])) for c in created["planned"]["first"]}
    assert planned == {(a["id"], START + timedelta(hours=i - 24)) for i, a in enumerate(booked)}
    before = await scheduled(scenario)
    await scenario.rules(day_before)
    assert await scheduled(scenario) == before | planned

    url = f"/calendars/{scenario.tenant.calendar_id}/notifications/{rule_id}"
    dry = await scenario.client.delete(url, params={"dryRun": "true"}, headers=scenario.headers)
    assert dry.status_code == 200, dry.text
    assert dry.json()["cancelled"]["count"] == 3
    cancelled = {
        (c["appointmentId"], instant(c["oldDueAt"])) for c in dry.json()["cancelled"]["first"]
    }
    assert await scheduled(scenario) == before | planned  # a dry run deletes nothing
    response = await scenario.client.delete(url, headers=scenario.headers)
    assert response.status_code == 200, response.text
    assert await scheduled(scenario) == (before | planned) - cancelled
    assert cancelled == before


async def test_deactivating_cancels_and_an_unchanged_schedule_changes_nothing(
    scenario: Scenario,
) -> None:
    rule_id, _ = await three_reminders(scenario)
    off = await impact(scenario, f"/{rule_id}/impact", {"isActive": False})
    assert off["cancelled"]["count"] == 3
    moved = await impact(scenario, f"/{rule_id}/impact", {"channel": "sms"})
    counts = {k: moved[k]["count"] for k in ("cancelled", "retimed", "planned")}
    assert counts == {"cancelled": 3, "retimed": 0, "planned": 3}
    assert {c["recipient"] for c in moved["planned"]["first"]} == {"+14155550123"}
    same = await impact(scenario, f"/{rule_id}/impact", {"subject": "Soon"})
    assert all(same[k]["count"] == 0 for k in ("cancelled", "retimed", "planned"))


async def test_impact_is_judged_like_a_save_and_stays_in_its_location(
    scenario: Scenario, client: httpx.AsyncClient, other_tenant: Tenant
) -> None:
    rule_id, _ = await three_reminders(scenario)
    path = f"/calendars/{scenario.tenant.calendar_id}/notifications/{rule_id}/impact"
    bad = await client.post(path, json={"channel": "fax"}, headers=scenario.headers)
    assert bad.status_code in (400, 422), bad.text
    other = await client.post(path, json={}, headers=other_tenant.headers())
    assert other.status_code == 404, other.text
    hidden = scenario.tenant.headers(await scenario.tenant.token_with("calendars/events.readonly"))
    found = await client.post(
        path, json={"beforeTime": [{"timeOffset": 3, "unit": "hours"}]}, headers=hidden
    )
    assert found.status_code == 200, found.text
    assert {c["recipient"] for c in found.json()["retimed"]["first"]} == {
        "[hidden: needs contacts.readonly]"
    }


async def test_a_big_calendar_is_counted_whole_and_shows_the_first_few(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    rule_id, booked = await three_reminders(scenario)
    monkeypatch.setattr(impact_module, "SAMPLE_PAGE", 2)
    monkeypatch.setattr(impact_module, "MAX_APPOINTMENTS", 2)
    found = await impact(
        scenario, f"/{rule_id}/impact", {"beforeTime": [{"timeOffset": 2, "unit": "hours"}]}
    )
    # Counted in SQL over the whole calendar; the walk stopped at its bound.
    assert (found["retimed"]["count"], found["complete"], found["pendingOfRule"]) == (3, True, 3)
    assert [c["appointmentId"] for c in found["retimed"]["first"]] == [b["id"] for b in booked[:2]]
    everything = await impact(scenario, f"/{rule_id}/impact", {"isActive": False})
    assert (everything["complete"], everything["cancelled"]["count"]) == (True, 3)


GUESTS = {**REMINDER, "receiverType": "guest"}


async def guest_reminders(scenario: Scenario) -> tuple[str, list[dict[str, Any]]]:
    contact = await scenario.tenant.add_contact()
    booked = [
        await scenario.book(contact, START + timedelta(hours=i), guests=[{"email": f"g{i}@ex.com"}])
        for i in range(3)
    ]
    [rule] = await scenario.rules(GUESTS)
    return rule["_id"], booked


async def test_a_guest_rule_is_counted_up_to_a_bound_and_says_so(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    rule_id, booked = await guest_reminders(scenario)
    monkeypatch.setattr(impact_module, "PAGE", 2)
    monkeypatch.setattr(impact_module, "MAX_APPOINTMENTS", 2)
    found = await impact(
        scenario, f"/{rule_id}/impact", {"beforeTime": [{"timeOffset": 2, "unit": "hours"}]}
    )
    assert found["retimed"]["count"] == 2
    assert (found["complete"], found["pendingOfRule"]) == (False, 3)
    assert instant(found["checkedUntil"]) == instant(booked[1]["startTime"])


async def test_an_impact_reads_no_page_past_its_time_and_says_how_far_it_looked(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    rule_id, booked = await guest_reminders(scenario)
    monkeypatch.setattr(impact_module, "PAGE", 1)
    monkeypatch.setattr(impact_module, "BUDGET", 0.0)
    found = await impact(
        scenario, f"/{rule_id}/impact", {"beforeTime": [{"timeOffset": 2, "unit": "hours"}]}
    )
    assert (found["retimed"]["count"], found["complete"], found["pendingOfRule"]) == (1, False, 3)
    assert instant(found["checkedUntil"]) == instant(booked[0]["startTime"])
    monkeypatch.setattr(impact_module, "BUDGET", 60.0)
    everything = await impact(
        scenario, f"/{rule_id}/impact", {"beforeTime": [{"timeOffset": 2, "unit": "hours"}]}
    )
    assert (everything["retimed"]["count"], everything["complete"]) == (3, True)


async def test_an_impact_over_several_pages_is_what_saving_does(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    rule_id, booked = await three_reminders(scenario)
    monkeypatch.setattr(impact_module, "PAGE", 2)
    both = {"beforeTime": [{"timeOffset": 1, "unit": "hours"}, {"timeOffset": 1, "unit": "days"}]}
    found = await impact(scenario, f"/{rule_id}/impact", both)
    assert found["complete"] is True
    assert {k: found[k]["count"] for k in ("cancelled", "retimed", "planned")} == {
        "cancelled": 0,
        "retimed": 0,
        "planned": 3,
    }
    kept = await scheduled(scenario)
    await scenario.update_rule(rule_id, **both)
    planned = {(c["appointmentId"], instant(c["newDueAt"])) for c in found["planned"]["first"]}
    assert await scheduled(scenario) == kept | planned
    assert {a for a, _ in planned} == {a["id"] for a in booked}
