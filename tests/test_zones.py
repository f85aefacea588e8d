"""Which valid zone names get a warning, and the zone each warning names."""

from __future__ import annotations

import pytest

from calnotify.zones import written_offset_hint, zone_warning


@pytest.mark.parametrize(
    "name", ["UTC", "Etc/UTC", "GMT", "America/New_York", "Europe/Oslo", "Asia/Kolkata"]
)
def test_current_names_get_no_warning(name: str) -> None:
    # Europe/Oslo is a link too, but the name Norway's zone is listed under.
    assert zone_warning(name) is None


@pytest.mark.parametrize(
    ("name", "warning"),
    [
        ("US/Eastern", "'US/Eastern' is a legacy name of America/New_York: use America/New_York"),
        ("US/Pacific", "use America/Los_Angeles"),
        ("Asia/Calcutta", "use Asia/Kolkata"),
        ("Europe/Kiev", "use Europe/Kyiv"),
        ("Japan", "use Asia/Tokyo"),
        (
            "EST",
            "'EST' is a legacy zone (UTC-05:00 all year, without daylight saving time): "
            "most likely you mean America/New_York",
        ),
        ("EST5EDT", "most likely you mean America/New_York"),
        ("PST8PDT", "most likely you mean America/Los_Angeles"),
        (
            "Etc/GMT+5",
            "'Etc/GMT+5' is a fixed offset, UTC-05:00 all year (POSIX signs are inverted), "
            "without daylight saving time: give the zone of the place (Area/City, e.g. "
            "America/New_York)",
        ),
        ("Etc/GMT-2", "UTC+02:00 all year"),
    ],
)
def test_legacy_and_fixed_offset_names_name_the_likely_zone(name: str, warning: str) -> None:
    found = zone_warning(name)
    assert found is not None and warning in found


def test_offsets_written_as_zones_say_what_to_give() -> None:
    assert written_offset_hint("UTC-05:00") == (
        "for UTC-05:00, give the zone of the place (Area/City, e.g. America/New_York) "
        "(or Etc/GMT+5: POSIX signs are inverted)"
    )
    assert written_offset_hint("GMT+0") == "for UTC+00:00, give UTC (or the zone of the place)"
    assert written_offset_hint("Mars/Olympus") is None
