"""A rule's impact counted over the whole calendar (calnotify.notifications.impact_counts)
is what the planner's own walk counts, and what saving then does, on a calendar of every
case: contacts on DND (all channels or one), without an email, deleted; statuses that
keep or void reminders and follow-ups; a reminder already late; an assigned user or none;
a weekly series; sends cancelled by an earlier save that a change brings back."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from calnotify.notifications import impact as impact_module
from calnotify.notifications import impact_counts
from tests.conftest import NOW
from tests.engine import Scenario
from tests.test_impact import REMINDER, START, impact

KINDS = ("cancelled", "retimed", "planned")
FOLLOWUP = {
    "receiverType": "contact",
    "channel": "email",
    "notificationType": "followup",
    "afterTime": [{"timeOffset": 1, "unit": "hours"}],
}


async def calendar_of_every_case(scenario: Scenario) -> None:
    tenant = scenario.tenant
    contacts = [
        await tenant.add_contact(),
        await tenant.add_contact(dnd=True),
        await tenant.add_contact(dnd_settings={"Email": {"status": "active"}}),
        await tenant.add_contact(dnd_settings={"SMS": {"status": "permanent"}}),
        await tenant.add_contact(email=""),
        await tenant.add_contact(phone=""),
    ]
    for i, contact in enumerate(contacts):
        start = START + timedelta(hours=3 * i)
        await scenario.book(contact, start)
        await scenario.book(contact, start + timedelta(hours=1), assignedUserId=tenant.user_id)
        confirmed = await scenario.book(contact, start + timedelta(days=1))
        await scenario.change(confirmed["id"], appointmentStatus="confirmed")
    for status in ("cancelled", "showed", "noshow"):
        booked = await scenario.book(contacts[0], START + timedelta(days=3))
        await scenario.change(booked["id"], appointmentStatus=status)
    # Soon: a reminder an hour or more before it is already late.
    await scenario.book(contacts[0], NOW + timedelta(minutes=30))
    # Ended a little while ago: follow-ups are still ahead.
    await scenario.book(contacts[0], NOW - timedelta(hours=2), toNotify=False)
    await scenario.book(contacts[0], START, rrule="RRULE:FREQ=WEEKLY;COUNT=4")
    gone = await tenant.add_contact()
    await scenario.book(gone, START + timedelta(hours=5))
    response = await scenario.client.delete(f"/contacts/{gone}", headers=scenario.headers)
    assert response.status_code == 200, response.text


async def walked_and_counted(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, path: str, body: Any
) -> tuple[dict[str, int], dict[str, int]]:
    """The counts of the whole-calendar statement, and of the planner's walk."""
    counted = await impact(scenario, path, body)
    assert counted["complete"] is True
    with monkeypatch.context() as patch:

        async def not_counted(*_: Any) -> None:
            return None

        patch.setattr(impact_counts, "counts", not_counted)
        patch.setattr(impact_module, "BUDGET", 600.0)
        walked = await impact(scenario, path, body)
    assert walked["complete"] is True
    return (
        {k: counted[k]["count"] for k in KINDS},
        {k: walked[k]["count"] for k in KINDS},
    )


EDITS = [
    {"beforeTime": [{"timeOffset": 2, "unit": "hours"}]},
    {"beforeTime": [{"timeOffset": 1, "unit": "hours"}, {"timeOffset": 1, "unit": "days"}]},
    {"beforeTime": [{"timeOffset": 90, "unit": "minutes"}, {"timeOffset": 1, "unit": "hours"}]},
    {"beforeTime": [{"timeOffset": 3, "unit": "days"}]},
    {"channel": "sms"},
    {"channel": "sms", "beforeTime": [{"timeOffset": 3, "unit": "hours"}]},
    {"receiverType": "assignedUser"},
    {"receiverType": "assignedUser", "channel": "inApp"},
    {"receiverType": "business", "selectedUsers": ["sub_account_admin"]},
    {"receiverType": "business", "channel": "inApp", "selectedUsers": ["sub_account_admin"]},
    {"receiverType": "emails", "additionalEmailIds": ["a@example.com", "b@example.com"]},
    {"notificationType": "followup", "afterTime": [{"timeOffset": 1, "unit": "hours"}]},
]


@pytest.mark.parametrize("edit", EDITS, ids=[str(i) for i in range(len(EDITS))])
async def test_an_edit_counts_what_the_planner_walks(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, edit: dict[str, Any]
) -> None:
    await calendar_of_every_case(scenario)
    [rule] = await scenario.rules(REMINDER)
    counted, walked = await walked_and_counted(
        scenario, monkeypatch, f"/{rule['_id']}/impact", edit
    )
    assert counted == walked
    assert sum(counted.values()) > 0


async def test_a_change_back_brings_cancelled_sends_back_as_counted(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    await calendar_of_every_case(scenario)
    [rule] = await scenario.rules(REMINDER)
    await scenario.update_rule(rule["_id"], beforeTime=[{"timeOffset": 2, "unit": "hours"}])
    back = {"beforeTime": [{"timeOffset": 1, "unit": "hours"}]}
    path = f"/{rule['_id']}/impact"
    counted, walked = await walked_and_counted(scenario, monkeypatch, path, back)
    assert counted == walked
    before = {d["id"] for d in await scenario.deliveries(status="scheduled")}
    await scenario.update_rule(rule["_id"], **back)
    after = {d["id"] for d in await scenario.deliveries(status="scheduled")}
    # Saving does what was counted: re-timed and cancelled ones leave, re-timed and
    # planned ones arrive (brought back: the rows cancelled by the first save).
    assert len(before - after) == counted["retimed"] + counted["cancelled"]
    assert len(after - before) == counted["retimed"] + counted["planned"]


@pytest.mark.parametrize(
    "created",
    [
        REMINDER,
        FOLLOWUP,
        {**REMINDER, "receiverType": "assignedUser", "channel": "sms"},
        {**REMINDER, "receiverType": "business", "selectedUsers": []},
        {
            **FOLLOWUP,
            "receiverType": "phoneNumbers",
            "channel": "sms",
            "additionalPhoneNumbers": ["+14155550111"],
        },
    ],
    ids=["reminder", "followup", "assigned-sms", "location", "phones"],
)
async def test_a_new_rule_counts_what_the_planner_walks(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, created: dict[str, Any]
) -> None:
    await calendar_of_every_case(scenario)
    counted, walked = await walked_and_counted(scenario, monkeypatch, "/impact", [created])
    assert counted == walked
    assert counted["planned"] > 0


async def test_a_followup_edit_counts_what_the_planner_walks(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    await calendar_of_every_case(scenario)
    [rule] = await scenario.rules(FOLLOWUP)
    path = f"/{rule['_id']}/impact"
    for edit in (
        {"afterTime": [{"timeOffset": 1, "unit": "days"}]},
        {"afterTime": [{"timeOffset": 1, "unit": "hours"}, {"timeOffset": 3, "unit": "hours"}]},
        {"notificationType": "reminder", "beforeTime": [{"timeOffset": 1, "unit": "hours"}]},
    ):
        counted, walked = await walked_and_counted(scenario, monkeypatch, path, edit)
        assert counted == walked, edit
