"""The front desk in the console: acting on appointments, the contact page, the Messages
page, and the fixes of the console's open list (issue 22). Chromium drives the same pages in
tests/test_console_browser.py."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import func, select, update

from calnotify.auth.sessions import LIFETIME
from calnotify.auth.tokens import hash_token
from calnotify.clock import ManualClock
from calnotify.console import words
from calnotify.db.engine import Database
from calnotify.models import AppointmentEvent, ConsoleSession, Delivery
from tests.conftest import NOW
from tests.factories import Tenant
from tests.test_availability import open_calendar
from tests.test_console import csrf_of, rule_form, rules_in_api, sign_in, signed_in, text_of

NEW_YORK = ZoneInfo("America/New_York")


async def book(
    client: httpx.AsyncClient, tenant: Tenant, contact: str, start: datetime, **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        "/calendars/events/appointments",
        json={
            "calendarId": tenant.calendar_id,
            "locationId": tenant.location_id,
            "contactId": contact,
            "startTime": start.isoformat(),
            "title": "Cleaning",
            **fields,
        },
        headers=tenant.headers(),
    )
    assert response.status_code == 200, response.text
    booked: dict[str, Any] = response.json()
    return booked


async def rules(client: httpx.AsyncClient, tenant: Tenant, *types: str) -> None:
    response = await client.post(
        f"/calendars/{tenant.calendar_id}/notifications",
        json=[
            {"receiverType": "contact", "channel": "email", "notificationType": t} for t in types
        ],
        headers=tenant.headers(),
    )
    assert response.status_code in (200, 201), response.text


async def status_in_api(client: httpx.AsyncClient, tenant: Tenant, event_id: str) -> Any:
    response = await client.get(
        f"/calendars/events/appointments/{event_id}", headers=tenant.headers()
    )
    assert response.status_code == 200, response.text
    return response.json()["event"]


async def test_the_desk_cancels_with_a_reason_and_the_rules_fire(
    client: httpx.AsyncClient, tenant: Tenant, db: Database
) -> None:
    await rules(client, tenant, "cancellation")
    contact = await tenant.add_contact()
    booked = await book(client, tenant, contact, NOW + timedelta(days=3))
    csrf = await signed_in(client, tenant)
    page = await client.get(f"/console/appointments/{booked['id']}")
    assert "Cancel appointment</button>" in page.text
    assert "Reason for cancelling (optional)" in text_of(page.text)

    done = await client.post(
        f"/console/appointments/{booked['id']}/cancel",
        data={"csrf": csrf, "reason": "Patient has the flu"},
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"/console/appointments/{booked['id']}?done=cancelled"
    assert (await status_in_api(client, tenant, booked["id"]))["appointmentStatus"] == "cancelled"
    shown = text_of((await client.get(done.headers["location"])).text)
    assert "Appointment cancelled." in shown
    assert "Status changed to cancelled" in shown
    assert "Patient has the flu" in shown
    assert "in the console (token" in shown
    async with db.session() as session:
        event = (
            await session.scalars(
                select(AppointmentEvent).where(
                    AppointmentEvent.appointment_id == booked["id"],
                    AppointmentEvent.kind == "status_changed",
                )
            )
        ).one()
        sent = await session.scalars(
            select(Delivery.notification_type).where(Delivery.appointment_id == booked["id"])
        )
        assert "cancellation" in sent.all()  # the calendar's rule fired, as through the API
    assert (event.source, event.note) == ("console", "Patient has the flu")
    assert event.actor  # the token of the session


async def test_the_desk_confirms_and_marks_showed_and_no_show(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    contact = await tenant.add_contact()
    booked = await book(client, tenant, contact, NOW + timedelta(days=3))
    csrf = await signed_in(client, tenant)
    for status, flash in (
        ("confirmed", "Appointment confirmed."),
        ("showed", "Marked as showed."),
        ("noshow", "Marked as no-show."),
    ):
        done = await client.post(
            f"/console/appointments/{booked['id']}/status", data={"csrf": csrf, "status": status}
        )
        assert done.status_code == 303, done.text
        assert (await status_in_api(client, tenant, booked["id"]))["appointmentStatus"] == status
        assert flash in text_of((await client.get(done.headers["location"])).text)
    bad = await client.post(
        f"/console/appointments/{booked['id']}/status", data={"csrf": csrf, "status": "invalid"}
    )
    assert bad.status_code == 400
    assert "Choose confirmed, showed or no-show." in bad.text
    forged = await client.post(
        f"/console/appointments/{booked['id']}/status", data={"csrf": "x", "status": "confirmed"}
    )
    assert forged.status_code == 403
    long_reason = await client.post(
        f"/console/appointments/{booked['id']}/cancel", data={"csrf": csrf, "reason": "x" * 501}
    )
    assert long_reason.status_code == 400
    assert "at most 500 are kept" in long_reason.text
    assert (await status_in_api(client, tenant, booked["id"]))["appointmentStatus"] == "noshow"


async def test_the_desk_needs_the_write_scope_and_its_own_location(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    contact = await tenant.add_contact()
    booked = await book(client, tenant, contact, NOW + timedelta(days=3))
    theirs = await book(
        client, other_tenant, await other_tenant.add_contact(), NOW + timedelta(days=3)
    )
    csrf = await signed_in(client, tenant)
    for path in ("status", "cancel", "reschedule"):
        response = await client.post(
            f"/console/appointments/{theirs['id']}/{path}",
            data={"csrf": csrf, "status": "confirmed", "start": "2030-01-09T10:00"},
        )
        assert response.status_code == 404, (path, response.text)
        assert "Appointment not found" in response.text
    assert (await status_in_api(client, other_tenant, theirs["id"]))["appointmentStatus"] == "new"

    client.cookies.clear()
    reader = await tenant.token_with("calendars/events.readonly", "calendars.readonly")
    await signed_in(client, Tenant(**{**tenant.__dict__, "token": reader}))
    page = await client.get(f"/console/appointments/{booked['id']}")
    assert page.status_code == 200
    assert "Cancel appointment" not in page.text
    refused = await client.post(
        f"/console/appointments/{booked['id']}/cancel",
        data={"csrf": csrf_of(page.text), "reason": ""},
    )
    assert refused.status_code == 403
    assert "calendars/events.write" in refused.text


async def test_the_desk_reschedules_to_a_free_slot_or_a_typed_time(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await open_calendar(client, tenant)
    contact = await tenant.add_contact()
    # Wed 2 Jan 2030, 09:00 in New York: inside the opening hours.
    booked = await book(client, tenant, contact, datetime(2030, 1, 2, 9, tzinfo=NEW_YORK))
    csrf = await signed_in(client, tenant)
    form = await client.get(f"/console/appointments/{booked['id']}/reschedule")
    assert form.status_code == 200
    slots = re.findall(r'name="slot" value="([^"]+)"', form.text)
    assert slots, form.text
    assert "A free slot in the next 14 days" in text_of(form.text)

    chosen = slots[-1]
    moved = await client.post(
        f"/console/appointments/{booked['id']}/reschedule", data={"csrf": csrf, "slot": chosen}
    )
    assert moved.status_code == 303, moved.text
    event = await status_in_api(client, tenant, booked["id"])
    assert datetime.fromisoformat(event["startTime"]) == datetime.fromisoformat(chosen)
    assert "Appointment rescheduled." in text_of((await client.get(moved.headers["location"])).text)

    closed = await client.post(
        f"/console/appointments/{booked['id']}/reschedule",
        data={"csrf": csrf, "start": "2030-01-05T22:00"},  # a Saturday night: closed
    )
    assert closed.status_code == 400
    assert "Not rescheduled" in text_of(closed.text)
    assert 'value="2030-01-05T22:00"' in closed.text
    nonsense = await client.post(
        f"/console/appointments/{booked['id']}/reschedule", data={"csrf": csrf, "start": "soon"}
    )
    assert nonsense.status_code == 400
    assert "The new start must be an ISO 8601 date and time" in text_of(nonsense.text)
    empty = await client.post(
        f"/console/appointments/{booked['id']}/reschedule", data={"csrf": csrf}
    )
    assert "Choose a free slot or enter a new start." in empty.text


async def test_the_contact_page_shows_appointments_messages_and_toggles_dnd(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    await rules(client, tenant, "booked")
    contact = await tenant.add_contact()
    booked = await book(client, tenant, contact, NOW + timedelta(days=3), title="Whitening")
    csrf = await signed_in(client, tenant)
    appointment = await client.get(f"/console/appointments/{booked['id']}")
    assert f'href="/console/contacts/{contact}"' in appointment.text
    listed = await client.get("/console/appointments", params={"q": "whitening"})
    assert f'href="/console/contacts/{contact}">Rosa Diaz</a>' in listed.text
    page = await client.get(f"/console/contacts/{contact}")
    assert page.status_code == 200, page.text
    shown = text_of(page.text)
    assert "Rosa Diaz" in shown
    assert "Whitening" in shown
    assert "1 message to Rosa Diaz" in shown
    assert "Stop SMS messages" in shown

    turned = await client.post(
        f"/console/contacts/{contact}/dnd", data={"csrf": csrf, "channel": "sms", "on": "true"}
    )
    assert turned.status_code == 303
    api = await client.get(f"/contacts/{contact}", headers=tenant.headers())
    assert api.json()["contact"]["dndSettings"]["SMS"]["status"] == "active"
    shown = text_of((await client.get(turned.headers["location"])).text)
    assert "Do not disturb turned on." in shown
    assert "Allow SMS messages" in shown
    off = await client.post(
        f"/console/contacts/{contact}/dnd", data={"csrf": csrf, "channel": "sms", "on": "false"}
    )
    assert off.status_code == 303
    api = await client.get(f"/contacts/{contact}", headers=tenant.headers())
    assert api.json()["contact"]["dndSettings"]["SMS"]["status"] == "inactive"
    bad = await client.post(
        f"/console/contacts/{contact}/dnd", data={"csrf": csrf, "channel": "fax", "on": "true"}
    )
    assert bad.status_code == 400

    theirs = await other_tenant.add_contact()
    assert (await client.get(f"/console/contacts/{theirs}")).status_code == 404
    stranger = await client.post(
        f"/console/contacts/{theirs}/dnd", data={"csrf": csrf, "channel": "sms", "on": "true"}
    )
    assert stranger.status_code == 404
    past_last = await client.get(f"/console/contacts/{contact}", params={"page": "9"})
    assert past_last.status_code == 404
    assert "there is 1 page of messages to this contact" in text_of(past_last.text)

    client.cookies.clear()
    reader = await tenant.token_with(
        "contacts.readonly", "calendars/events.readonly", "calendars.readonly"
    )
    await signed_in(client, Tenant(**{**tenant.__dict__, "token": reader}))
    page = await client.get(f"/console/contacts/{contact}")
    assert "changed with the contacts.write scope" in text_of(page.text)
    refused = await client.post(
        f"/console/contacts/{contact}/dnd",
        data={"csrf": csrf_of(page.text), "channel": "sms", "on": "true"},
    )
    assert refused.status_code == 403


async def test_the_messages_page_filters_and_pages(
    client: httpx.AsyncClient, tenant: Tenant, db: Database
) -> None:
    await rules(client, tenant, "booked", "confirmation")
    contact = await tenant.add_contact()
    booked = await book(client, tenant, contact, NOW + timedelta(days=3))
    await signed_in(client, tenant)
    everything = await client.get("/console/messages")
    assert everything.status_code == 200
    assert "1 message" in text_of(everything.text)
    async with db.session() as session:
        await session.execute(
            update(Delivery)
            .where(Delivery.appointment_id == booked["id"])
            .values(status="failed", reason="permanent", updated_at=NOW - timedelta(minutes=5))
        )
    failed = await client.get(
        "/console/messages",
        params={"status": "failed", "reason": "permanent", "channel": "email", "type": "booked"},
    )
    assert "1 message" in text_of(failed.text)
    assert "failed: the provider refused it" in text_of(failed.text)
    none = await client.get("/console/messages", params={"status": "sent"})
    assert "No message matches." in none.text
    day = (NOW + timedelta(days=1)).date().isoformat()
    later = await client.get("/console/messages", params={"from": day})
    assert "No message matches." in later.text  # the booked message was due at once
    bad = await client.get("/console/messages", params={"from": "someday"})
    assert bad.status_code == 400
    assert "must be a date like 2030-01-31" in bad.text
    past_last = await client.get("/console/messages", params={"page": "7"})
    assert past_last.status_code == 404
    assert "Page 7 is past the last: there is 1 page of messages." in text_of(past_last.text)

    # The Health page's counts link here, pre-filtered; failures the dispatcher recorded
    # (no sent_at) count as failed in the last hour.
    health = await client.get("/console/health")
    linked = re.search(r'href="(/console/messages\?status=failed[^"]*)"[^>]*>(\d+)<', health.text)
    assert linked, health.text
    assert linked.group(2) == "1"
    listed = await client.get(linked.group(1).replace("&amp;", "&"))
    assert listed.status_code == 200, listed.text
    assert "1 message" in text_of(listed.text)
    assert 'href="/console/messages?status=scheduled"' in health.text


async def test_health_minutes_are_hours_and_minutes_in_any_zone(
    client: httpx.AsyncClient, tenant: Tenant, db: Database
) -> None:
    from calnotify.models import Location

    async with db.session() as session:
        await session.execute(
            update(Location)
            .where(Location.id == tenant.location_id)
            .values(timezone="America/Sao_Paulo")  # abbreviated "-03": not three letters
        )
    await signed_in(client, tenant)
    health = await client.get("/console/health")
    labels = re.findall(r'<th scope="row">([^<]+)</th>', health.text)
    local = NOW.astimezone(ZoneInfo("America/Sao_Paulo"))
    assert local.strftime("%H:%M") in labels
    assert all(re.fullmatch(r"\d\d:\d\d", label) for label in labels[:60]), labels[:5]


async def test_the_to_day_across_a_change_of_clocks_is_a_calendar_day(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    contact = await tenant.add_contact()
    # 3 Nov 2030, the day New York falls back: 25 hours long. 23:30 is still that day.
    late = datetime(2030, 11, 3, 23, 30, tzinfo=NEW_YORK)
    await book(client, tenant, contact, late, title="Late on the long day")
    await signed_in(client, tenant)
    found = await client.get(
        "/console/appointments", params={"from": "2030-11-03", "to": "2030-11-03"}
    )
    assert "Late on the long day" in found.text


def test_one_is_singular_in_a_schedule() -> None:
    assert words.schedule([{"timeOffset": 1, "unit": "minutes"}], "before") == "1 minute before"
    assert words.schedule([{"timeOffset": 2, "unit": "hours"}], "after") == "2 hours after"


async def test_the_search_label_names_everything_it_searches(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await signed_in(client, tenant)
    page = await client.get("/console/appointments")
    assert '<label for="q">Title, or contact name, email or phone</label>' in page.text


# --- the console's open list (issue 22, item 6) -------------------------------------------


async def test_schedule_rows_past_ten_are_refused_with_a_message(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    csrf = await signed_in(client, tenant)
    form = rule_form(csrf, notificationType="reminder")
    for i in range(11):
        form |= {f"offset{i}": str(i + 1), f"unit{i}": "hours", f"when{i}": "before"}
    refused = await client.post(f"/console/calendars/{tenant.calendar_id}/rules", data=form)
    assert refused.status_code == 400
    assert "at most 10 offsets: 11 were sent, remove 1" in text_of(refused.text)
    assert 'value="11"' in refused.text  # the eleventh row is shown again, not dropped
    assert await rules_in_api(client, tenant) == []


async def test_bad_offsets_are_told_in_the_preview_and_the_form_with_unique_ids(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    csrf = await signed_in(client, tenant)
    form = rule_form(csrf, notificationType="reminder", offset0="soon", offset1="later")
    form |= {"unit1": "hours", "when1": "before"}
    preview = await client.post(
        f"/console/calendars/{tenant.calendar_id}/preview",
        data=form,
        headers={"HX-Request": "true"},
    )
    assert "Schedule: row 1: the offset must be a number" in text_of(preview.text)
    assert 'id="preview-status"' in preview.text
    assert "Preview: nothing to preview yet, 3 problems." in preview.text

    saved = await client.post(f"/console/calendars/{tenant.calendar_id}/rules", data=form)
    assert saved.status_code == 400
    assert 'id="schedule-error"' in saved.text and 'id="schedule-error-2"' in saved.text
    assert 'href="#schedule"' in saved.text and 'id="schedule"' in saved.text
    assert 'id="selectedUsers"' in saved.text
    ids = re.findall(r' id="([^"]+)"', saved.text)
    assert len(ids) == len(set(ids)), [i for i in ids if ids.count(i) > 1]


async def test_an_error_inside_an_htmx_swap_is_a_fragment(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await signed_in(client, tenant)
    expired = await client.post(
        f"/console/calendars/{tenant.calendar_id}/preview",
        data=rule_form("not-the-token"),
        headers={"HX-Request": "true"},
    )
    assert expired.status_code == 403
    assert "<html" not in expired.text and "<nav" not in expired.text
    assert "Form expired" in expired.text
    whole = await client.post(
        f"/console/calendars/{tenant.calendar_id}/preview", data=rule_form("not-the-token")
    )
    assert "<html" in whole.text


async def test_the_rule_form_has_a_one_line_live_region(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    csrf = await signed_in(client, tenant)
    page = await client.get(f"/console/calendars/{tenant.calendar_id}/rules/new")
    assert re.search(r'<p id="preview-status"[^>]*aria-live="polite"', page.text)
    assert re.search(r'<div id="preview"[^>]*aria-live', page.text) is None
    preview = await client.post(
        f"/console/calendars/{tenant.calendar_id}/preview",
        data=rule_form(csrf),
        headers={"HX-Request": "true"},
    )
    line = re.search(r'<p id="preview-status"[^>]*hx-swap-oob="true">([^<]*)</p>', preview.text)
    assert line and line.group(1) == "Preview: 1 message."


async def test_deactivate_and_delete_name_their_rule_and_delete_asks_first(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await rules(client, tenant, "booked")
    await signed_in(client, tenant)
    page = await client.get(f"/console/calendars/{tenant.calendar_id}")
    assert 'aria-label="Deactivate Booked Email rule"' in page.text
    assert 'aria-label="Delete Booked Email rule"' in page.text
    assert 'hx-confirm="Delete the Booked Email rule? Its planned messages are cancelled."' in (
        page.text
    )


async def test_an_unknown_console_address_and_a_page_past_the_last_say_so(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await signed_in(client, tenant)
    unknown = await client.get("/console/no-such-page")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("text/html")
    assert "There is no console page at this address." in unknown.text
    assert (await client.get("/console/static/console.css")).status_code == 200
    for path, what in (
        ("/console/appointments", "appointments"),
        ("/console/outbox", "outbox messages"),
        ("/console/templates", "templates"),
    ):
        past = await client.get(path, params={"page": "3"})
        assert past.status_code == 404, path
        assert f"Page 3 is past the last: there is 1 page of {what}." in text_of(past.text)


async def test_signing_in_again_ends_the_previous_session_and_sweeps_expired_ones(
    client: httpx.AsyncClient, tenant: Tenant, db: Database, clock: ManualClock
) -> None:
    first = await sign_in(client, tenant.token)
    assert first.status_code == 303
    old = client.cookies["calnotify_console"]
    again = await sign_in(client, tenant.token)
    assert again.status_code == 303
    assert client.cookies["calnotify_console"] != old
    async with db.session(write=False) as session:
        kept = (await session.scalars(select(ConsoleSession.id_hash))).all()
    assert kept == [hash_token(client.cookies["calnotify_console"])]

    other = httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url))
    async with other:
        assert (await sign_in(other, tenant.token)).status_code == 303
    clock.advance(seconds=LIFETIME.total_seconds() + 60)
    client.cookies.clear()
    assert (await sign_in(client, tenant.token)).status_code == 303
    async with db.session(write=False) as session:
        left = await session.scalar(select(func.count()).select_from(ConsoleSession))
    assert left == 1  # the other browser's expired session was swept


async def test_an_occurrence_links_to_the_previous_and_the_next(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    contact = await tenant.add_contact()
    master = await book(
        client,
        tenant,
        contact,
        NOW + timedelta(days=1),
        title="Weekly check",
        rrule="RRULE:FREQ=WEEKLY;COUNT=5",
    )
    await signed_in(client, tenant)
    series = await client.get(f"/console/appointments/{master['id']}")
    links = re.findall(rf'href="/console/appointments/({master["id"]}_\d+)"', series.text)
    assert len(links) == 5
    middle = await client.get(f"/console/appointments/{links[2]}")
    assert re.search(rf'href="/console/appointments/{links[1]}" rel="prev">Previous', middle.text)
    assert re.search(rf'href="/console/appointments/{links[3]}" rel="next">Next', middle.text)
    shown = re.findall(rf'href="/console/appointments/({master["id"]}_\d+)"', middle.text)
    assert links[0] in shown  # earlier occurrences are listed too
    first = await client.get(f"/console/appointments/{links[0]}")
    assert "Previous occurrence" not in first.text and "Next occurrence" in first.text


async def test_a_desk_action_on_a_page_changed_meanwhile_changes_nothing(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    contact = await tenant.add_contact()
    booked = await book(client, tenant, contact, NOW + timedelta(days=3))
    csrf = await signed_in(client, tenant)
    page = await client.get(f"/console/appointments/{booked['id']}")
    seen = re.search(r'name="version" value="(\d+)"', page.text)
    assert seen
    # Another desk (here, the API) confirms it first.
    changed = await client.put(
        f"/calendars/events/appointments/{booked['id']}",
        json={"appointmentStatus": "confirmed"},
        headers=tenant.headers(),
    )
    assert changed.status_code == 200
    stale = await client.post(
        f"/console/appointments/{booked['id']}/cancel",
        data={"csrf": csrf, "reason": "", "version": seen.group(1)},
    )
    assert stale.status_code == 409
    assert "changed after the page was opened: nothing was changed now" in text_of(stale.text)
    assert (await status_in_api(client, tenant, booked["id"]))["appointmentStatus"] == "confirmed"
    fresh = await client.get(f"/console/appointments/{booked['id']}")
    version = re.search(r'name="version" value="(\d+)"', fresh.text)
    assert version
    done = await client.post(
        f"/console/appointments/{booked['id']}/cancel",
        data={"csrf": csrf, "reason": "", "version": version.group(1)},
    )
    assert done.status_code == 303


async def test_erasing_the_contact_scrubs_a_cancellation_reason(
    client: httpx.AsyncClient, tenant: Tenant, db: Database
) -> None:
    contact = await tenant.add_contact()
    booked = await book(client, tenant, contact, NOW + timedelta(days=3))
    csrf = await signed_in(client, tenant)
    done = await client.post(
        f"/console/appointments/{booked['id']}/cancel",
        data={"csrf": csrf, "reason": "Rosa Diaz wrote from rosa@example.com"},
    )
    assert done.status_code == 303
    erased = await client.delete(f"/contacts/{contact}", headers=tenant.headers())
    assert erased.status_code == 200
    async with db.session(write=False) as session:
        notes = (
            await session.scalars(select(AppointmentEvent.note).where(AppointmentEvent.note != ""))
        ).all()
    assert len(notes) == 1
    assert "Rosa" not in notes[0] and "rosa@example.com" not in notes[0]
