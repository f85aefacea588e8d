"""Time zone names that work but probably do not say what was meant.

IANA keeps old names working: ``US/Eastern`` is a link to ``America/New_York``, ``EST`` is
a fixed UTC-05:00 all year (no daylight saving time), ``Etc/GMT+5`` is UTC-05:00 too (POSIX
signs are inverted). A location given one of them is accepted (it is a valid zone), and
:func:`zone_warning` says which zone was most likely meant; the CLI prints it when the
zone is given and ``calnotify check`` lists the locations that still have one.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

# Names of UTC itself: nothing to warn about.
_UTC = frozenset(
    {
        "UTC",
        "UCT",
        "GMT",
        "GMT0",
        "GMT+0",
        "GMT-0",
        "Greenwich",
        "Universal",
        "Zulu",
        *(
            f"Etc/{name}"
            for name in ("UTC", "UCT", "GMT", "GMT0", "GMT+0", "GMT-0", "Greenwich", "Universal")
        ),
        "Etc/Zulu",
    }
)

# The abbreviation and POSIX-rule zones, and what whoever wrote one most likely meant.
_ABBREVIATIONS = {
    "EST": ("UTC-05:00 all year, without daylight saving time", "America/New_York"),
    "MST": ("UTC-07:00 all year, without daylight saving time", "America/Denver"),
    "HST": ("UTC-10:00 all year", "Pacific/Honolulu"),
    "EST5EDT": ("the US Eastern rules of 1970", "America/New_York"),
    "CST6CDT": ("the US Central rules of 1970", "America/Chicago"),
    "MST7MDT": ("the US Mountain rules of 1970", "America/Denver"),
    "PST8PDT": ("the US Pacific rules of 1970", "America/Los_Angeles"),
    "CET": ("Central European Time", "Europe/Berlin"),
    "MET": ("Middle European Time", "Europe/Berlin"),
    "EET": ("Eastern European Time", "Europe/Athens"),
    "WET": ("Western European Time", "Europe/Lisbon"),
}

# A place on each common whole-hour offset, to point at instead of a fixed offset.
_PLACES = {
    -10: "Pacific/Honolulu",
    -9: "America/Anchorage",
    -8: "America/Los_Angeles",
    -7: "America/Denver",
    -6: "America/Chicago",
    -5: "America/New_York",
    -4: "America/Halifax",
    -3: "America/Sao_Paulo",
    0: "Europe/London",
    1: "Europe/Berlin",
    2: "Europe/Athens",
    3: "Europe/Moscow",
    4: "Asia/Dubai",
    5: "Asia/Karachi",
    7: "Asia/Bangkok",
    8: "Asia/Shanghai",
    9: "Asia/Tokyo",
    10: "Australia/Sydney",
    12: "Pacific/Auckland",
}

_ETC_OFFSET = re.compile(r"Etc/GMT([+-])(\d{1,2})")
_WRITTEN_OFFSET = re.compile(r"(?:UTC|GMT)\s*([+-])\s*(\d{1,2})(?::?00)?", re.IGNORECASE)


def zone_warning(name: str) -> str | None:
    """One line saying why the valid zone ``name`` is probably not what was meant and
    which zone most likely was; None for a current IANA name (``America/New_York``,
    ``UTC``)."""
    if name in _UTC:
        return None
    if found := _ETC_OFFSET.fullmatch(name):
        hours = -int(found.group(2)) if found.group(1) == "+" else int(found.group(2))
        return (
            f"{name!r} is a fixed offset, {_offset(hours)} all year (POSIX signs are inverted), "
            f"without daylight saving time: {_place(hours)}"
        )
    if name in _ABBREVIATIONS:
        what, likely = _ABBREVIATIONS[name]
        return f"{name!r} is a legacy zone ({what}): most likely you mean {likely}"
    target = _links().get(name)
    if target is not None and name not in _current_names():
        return f"{name!r} is a legacy name of {target}: use {target}"
    return None


def written_offset_hint(text: str) -> str | None:
    """For a name that is not a zone but an offset people write (``GMT+2``, ``UTC-05:00``):
    what to give instead; None otherwise."""
    found = _WRITTEN_OFFSET.fullmatch(text.strip())
    if found is None:
        return None
    hours = int(found.group(2)) * (1 if found.group(1) == "+" else -1)
    if not hours:
        return "for UTC+00:00, give UTC (or the zone of the place)"
    etc = f"Etc/GMT{'-' if hours > 0 else '+'}{abs(hours)}"
    return f"for {_offset(hours)}, {_place(hours)} (or {etc}: POSIX signs are inverted)"


def _offset(hours: int) -> str:
    sign = "-" if hours < 0 else "+"
    return f"UTC{sign}{abs(hours):02d}:00"


def _place(hours: int) -> str:
    place = _PLACES.get(hours)
    if place is None:
        return "give the zone of the place (Area/City)"
    return f"give the zone of the place (Area/City, e.g. {place})"


@lru_cache(maxsize=1)
def _links() -> dict[str, str]:
    """IANA's links (``US/Eastern`` → ``America/New_York``), from the tzdata package."""
    links: dict[str, str] = {}
    for line in _tzdata_file("tzdata.zi").splitlines():
        if line.startswith("L "):
            _, target, name = line.split()
            links[name] = target
    return links


@lru_cache(maxsize=1)
def _current_names() -> frozenset[str]:
    """The zones IANA lists for the countries (``zone.tab``): links among them, such as
    ``Europe/Oslo``, are the names people of that country use, not legacy ones."""
    names: set[str] = set()
    for line in _tzdata_file("zone.tab").splitlines():
        if line and not line.startswith("#"):
            names.add(line.split("\t")[2])
    return frozenset(names)


def _tzdata_file(name: str) -> str:
    try:
        return resources.files("tzdata").joinpath("zoneinfo", name).read_text("utf-8")
    except (ModuleNotFoundError, FileNotFoundError):  # the system's zones only
        return ""
