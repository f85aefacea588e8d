"""Parsing and showing instants: stored in UTC, shown in the location's zone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def zone(name: str | None) -> ZoneInfo:
    """The zone called ``name``, UTC when it is empty or unknown."""
    if name:
        try:
            return ZoneInfo(name)
        except (KeyError, ValueError, OSError):  # OSError: a folder of zones ("America")
            pass
    return ZoneInfo("UTC")


def parse_instant(value: str, default_zone: ZoneInfo) -> datetime | None:
    """ISO 8601 with any offset (``Z`` too) → UTC; without an offset, in ``default_zone``.

    None when the text is not such a time or lies outside 1970 to 2200.
    """
    if len(value) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=default_zone)
    try:
        instant = parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None
    if not EARLIEST <= instant < LATEST:
        return None
    return instant


def show_local(instant: datetime, where: ZoneInfo) -> str:
    """``2026-11-24T10:00:00-05:00``: ISO 8601 in ``where``, with its offset."""
    local = instant.astimezone(where)
    spec = "seconds" if local.microsecond == 0 else "milliseconds"
    return local.isoformat(timespec=spec)


def from_epoch_ms(value: int) -> datetime | None:
    try:
        instant = datetime.fromtimestamp(value / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return instant if EARLIEST <= instant < LATEST else None
