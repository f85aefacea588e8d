"""``calnotify locations update|delete``, phone numbers in any common form, and the
warnings about legacy time zone names, as the command line shows them."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from calnotify.app import create_app
from calnotify.cli import main
from calnotify.clock import ManualClock
from calnotify.config import Settings
from calnotify.db.base import Base
from calnotify.db.engine import Database
from calnotify.db.urls import sync_url
from tests.conftest import NOW
from tests.engine import Scenario
from tests.factories import make_tenant, notification
from tests.test_cli import one_line_error, run, run_list, use_database

__all__ = ["use_database"]  # the fixture, used by name

UNKNOWN = "AAAAAAAAAAAAAAAAAAAA"


def create(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    code, location, err = run(capsys, "locations", "create", "--name", "Acme", *args)
    assert code == 0, err
    return location


# --- update -------------------------------------------------------------------------------


def test_update_changes_only_what_is_given(
    use_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    location = create(capsys, "--email", "front@acme.example", "--timezone", "Europe/Berlin")
    loc = str(location["id"])
    code, updated, err = run(
        capsys, "locations", "update", loc, "--name", "Acme Dental", "--timezone", "Asia/Tokyo"
    )
    assert code == 0, err
    assert (updated["id"], updated["name"], updated["timezone"]) == (
        loc,
        "Acme Dental",
        "Asia/Tokyo",
    )
    assert updated["email"] == "front@acme.example"
    assert err == ""  # a current zone name: nothing to warn about
    code, cleared, _ = run(capsys, "locations", "update", loc, "--email", "")
    assert code == 0 and cleared["email"] == "" and cleared["name"] == "Acme Dental"
    _, listed, _ = run_list(capsys, "locations", "list")
    assert [(x["name"], x["timezone"]) for x in listed] == [("Acme Dental", "Asia/Tokyo")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timezone", "Mars/Olympus"], "'Mars/Olympus' is not an IANA time zone"),
        (["--email", "nope"], "'nope' is not a valid email address"),
        (["--name", " "], "name"),
        (["--country", "USA"], "ISO 3166 alpha-2"),
        (["--phone", "555"], "--phone: '555' is not an E.164 phone number"),
        ([], "nothing to change"),
        (["--confirm-keywords", "yes, stop"], "--confirm-keywords: STOP is a carrier keyword"),
        (["--reply-help", "x" * 321], "--reply-help: at most 320 characters"),
    ],
)
def test_update_refuses_bad_values_in_one_line(
    use_database: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    loc = str(create(capsys, "--timezone", "Europe/Berlin")["id"])
    err = one_line_error(capsys, "locations", "update", loc, *args)
    assert message in err
    _, [unchanged], _ = run_list(capsys, "locations", "list")
    assert unchanged["timezone"] == "Europe/Berlin" and unchanged["name"] == "Acme"


def test_update_sets_the_reply_settings(
    use_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    loc = str(create(capsys, "--phone", "+14155550100")["id"])
    code, updated, err = run(capsys, "locations", "update", loc, "--name", "Acme Dental")
    assert code == 0, err
    assert updated["replies"] == {
        "confirmKeywords": ["C", "CONFIRM", "Y", "YES"],
        "help": "Acme Dental: appointment messages. Questions? Call +14155550100. "
        "Reply STOP to opt out.",
    }
    args = ["--confirm-keywords", " ok, Si ", "--reply-help", "Acme: call us."]
    code, updated, err = run(capsys, "locations", "update", loc, *args)
    assert code == 0, err
    assert updated["replies"] == {"confirmKeywords": ["OK", "SI"], "help": "Acme: call us."}
    code, updated, err = run(
        capsys, "locations", "update", loc, "--confirm-keywords", "", "--reply-help", ""
    )
    assert code == 0, err
    assert updated["replies"]["confirmKeywords"] == ["C", "CONFIRM", "Y", "YES"]
    assert updated["replies"]["help"].startswith("Acme Dental: appointment messages.")


@pytest.mark.parametrize("action", [["update", UNKNOWN, "--name", "X"], ["delete", UNKNOWN]])
def test_unknown_location_ids_are_named(
    use_database: str, capsys: pytest.CaptureFixture[str], action: list[str]
) -> None:
    err = one_line_error(capsys, "locations", *action)
    assert f"no location {UNKNOWN} (`calnotify locations list` shows them)" in err


# --- delete -------------------------------------------------------------------------------


async def _booked(database_url: str) -> tuple[str, str]:
    """Two locations; the first with a booked email and a reminder rule, a contact and an
    appointment (so deliveries). Their ids."""
    settings = Settings(database_url=database_url)
    db = Database(database_url)
    try:
        tenant = await make_tenant(db, "Acme Dental")
        other = await make_tenant(db, "Globex Clinic")
        clock = ManualClock(NOW)
        app = create_app(settings, database=db, clock=clock)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cn.test") as client:
            scenario = Scenario(client, tenant, clock, db, settings)
            reminder = notification(
                notificationType="reminder", beforeTime=[{"timeOffset": 1, "unit": "hours"}]
            )
            await scenario.rules(notification(), reminder)
            await scenario.book(await tenant.add_contact(), NOW + timedelta(days=2))
        return tenant.location_id, other.location_id
    finally:
        await db.dispose()


def _rows_of(database_url: str, location_id: str) -> dict[str, int]:
    """Rows of every table with a ``location_id`` column that belong to the location."""
    engine = create_engine(sync_url(database_url))
    try:
        with engine.connect() as connection:
            return {
                table.name: connection.scalar(
                    select(func.count()).where(table.c.location_id == location_id)
                )
                or 0
                for table in Base.metadata.sorted_tables
                if "location_id" in table.c
            }
    finally:
        engine.dispose()


def test_delete_is_refused_while_the_location_has_appointments(
    use_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    loc, _ = asyncio.run(_booked(use_database))
    err = one_line_error(capsys, "locations", "delete", loc)
    assert f"location {loc} (Acme Dental) has 1 calendar, 1 appointment and 2 deliveries" in err
    assert f"`calnotify locations delete {loc} --force` deletes them with it" in err
    assert _rows_of(use_database, loc)["appointments"] == 1


def test_forced_delete_says_what_it_removed_and_leaves_other_locations(
    use_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    loc, other = asyncio.run(_booked(use_database))
    before = _rows_of(use_database, other)
    code, removed, err = run(capsys, "locations", "delete", loc, "--force")
    assert code == 0, err
    assert removed == {
        "id": loc,
        "name": "Acme Dental",
        "deleted": True,
        "removed": {
            "deliveries": 2,
            "appointments": 1,
            "notificationRules": 2,
            "calendars": 1,
            "contacts": 1,
            "users": 2,
            "tokens": 1,
        },
    }
    assert not any(_rows_of(use_database, loc).values())
    assert _rows_of(use_database, other) == before
    _, listed, _ = run_list(capsys, "locations", "list")
    assert [x["id"] for x in listed] == [other]


def test_a_location_with_only_users_and_tokens_is_deleted_without_force(
    use_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    loc = str(create(capsys)["id"])
    run(capsys, "users", "create", "--location", loc, "--email", "ann@acme.example")
    run(capsys, "tokens", "create", "--location", loc)
    run(capsys, "senders", "add", "--location", loc, "--email", "desk@acme.example")
    run(capsys, "webhooks", "add", "--location", loc, "--url", "https://hooks.example.com/x")
    code, removed, _ = run(capsys, "locations", "delete", loc)
    assert code == 0
    assert removed["removed"] == {"users": 1, "tokens": 1, "allowedSenders": 1, "webhooks": 1}
    assert run_list(capsys, "locations", "list")[1] == []


# --- phone numbers ------------------------------------------------------------------------


def test_phone_options_take_any_common_form(
    use_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    location = create(capsys, "--country", "us", "--phone", "(415) 555-0100")
    assert (location["country"], location["phone"]) == ("US", "+14155550100")
    loc = str(location["id"])
    code, user, _ = run(
        capsys, "users", "create", "--location", loc, "--email", "a@acme.example",
        "--phone", "1-415-555-0199",
    )  # fmt: skip
    assert code == 0 and user["phone"] == "+14155550199"
    code, updated, _ = run(capsys, "locations", "update", loc, "--phone", "+1 415.555.0111")
    assert code == 0 and updated["phone"] == "+14155550111"
    code, sender, _ = run(capsys, "senders", "add", "--location", loc, "--number", "1-415-555-0122")
    assert code == 0 and sender["value"] == "+14155550122"
    # The same number in another form is the same sender.
    code, again, _ = run(
        capsys, "senders", "add", "--location", loc, "--number", "+1 (415) 555-0122"
    )
    assert again == sender
    code, removed, _ = run(
        capsys, "senders", "remove", "--location", loc, "--number", "415 555 0122"
    )
    assert code == 0 and removed["id"] == sender["id"]


def test_a_number_without_plus_needs_the_locations_country(
    use_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    loc = str(create(capsys)["id"])
    err = one_line_error(capsys, "senders", "add", "--location", loc, "--number", "1-415-555-0122")
    assert "--number: '1-415-555-0122' is not an E.164 phone number" in err
    assert "set the location's country" in err
    err = one_line_error(capsys, "locations", "update", loc, "--phone", "(415) 555-0100")
    assert "--phone: '(415) 555-0100' is not an E.164 phone number" in err
    # Given with the country, it is read there.
    code, updated, _ = run(
        capsys, "locations", "update", loc, "--phone", "(415) 555-0100", "--country", "US"
    )
    assert code == 0 and updated["phone"] == "+14155550100"


def test_senders_match_email_addresses_whatever_their_case(
    use_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    loc = str(create(capsys)["id"])
    _, added, _ = run(capsys, "senders", "add", "--location", loc, "--email", "Desk@acme.example")
    _, again, _ = run(capsys, "senders", "add", "--location", loc, "--email", "DESK@Acme.Example")
    assert again == added and added["value"] == "Desk@acme.example"
    code, removed, _ = run(
        capsys, "senders", "remove", "--location", loc, "--email", "desk@ACME.example"
    )
    assert code == 0 and removed["id"] == added["id"]


# --- time zones ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "warning"),
    [
        ("US/Eastern", "'US/Eastern' is a legacy name of America/New_York"),
        ("EST", "most likely you mean America/New_York"),
        ("Etc/GMT+5", "'Etc/GMT+5' is a fixed offset, UTC-05:00 all year"),
        ("Asia/Calcutta", "use Asia/Kolkata"),
    ],
)
def test_a_legacy_zone_is_accepted_with_a_warning(
    use_database: str, capsys: pytest.CaptureFixture[str], zone: str, warning: str
) -> None:
    code, location, err = run(capsys, "locations", "create", "--name", "A", "--timezone", zone)
    assert code == 0 and location["timezone"] == zone
    assert err.startswith("calnotify: warning: --timezone: ") and warning in err
    code, _, err = run(capsys, "locations", "update", str(location["id"]), "--timezone", zone)
    assert code == 0 and warning in err
    code, _, err = run(capsys, "locations", "update", str(location["id"]), "--name", "B")
    assert code == 0 and err == ""  # the zone was not given


def test_an_offset_written_as_a_zone_is_refused_with_what_to_give(
    use_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = one_line_error(capsys, "locations", "create", "--name", "A", "--timezone", "GMT+2")
    assert "'GMT+2' is not an IANA time zone: for UTC+02:00" in err
    assert "Europe/Athens" in err and "Etc/GMT-2" in err


def test_check_warns_of_each_location_with_a_legacy_zone(
    use_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    create(capsys, "--timezone", "America/New_York")
    assert main(["check"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["ok", "database"],
        ["warn", "public_url"],
        ["ok", "time_zones"],
    ]
    assert lines[2].endswith("every location has a current IANA zone (1 location)")

    legacy = str(create(capsys, "--timezone", "US/Eastern")["id"])
    assert main(["check"]) == 0  # a warning, not a failure
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("ok    database")
    assert lines[1].startswith("warn  public_url  not set: action links")
    assert lines[2:] == [
        f"warn  time_zones  location {legacy} (Acme): 'US/Eastern' is a legacy name of "
        "America/New_York: use America/New_York "
        f"(`calnotify locations update {legacy} --timezone ZONE`)"
    ]
