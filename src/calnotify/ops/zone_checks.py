"""``calnotify check``'s last check: the time zones the locations were given.

A legacy or fixed-offset zone name (``US/Eastern``, ``EST``, ``Etc/GMT+5``) works, so
nothing refuses it, but it probably does not say what was meant; each location that has
one is a ``warn`` line naming the zone most likely meant (:func:`calnotify.zones.zone_warning`).
Run only once the database check passed; reads the locations and writes nothing.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from calnotify.config import Settings
from calnotify.db.urls import async_url
from calnotify.models import Location
from calnotify.ops.results import CheckResult
from calnotify.zones import zone_warning

NAME = "time_zones"
# More lines than this would bury the other checks; the rest are counted.
_MOST_SHOWN = 20


async def check_time_zones(
    settings: Settings,
    timeout: float = 10.0,  # noqa: ASYNC109
) -> list[CheckResult]:
    """One ``ok`` line, or a ``warn`` line per location with a legacy or fixed-offset
    zone; a failure to read the locations is a ``FAIL`` line. Never raises."""
    try:
        async with asyncio.timeout(timeout):
            rows = await _locations(settings)
    except TimeoutError:
        return [CheckResult(NAME, False, f"could not read the locations within {timeout:g} s")]
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return [CheckResult(NAME, False, f"could not read the locations: {reason}")]
    found = [
        (location_id, name, warning)
        for location_id, name, zone in rows
        if (warning := zone_warning(zone)) is not None
    ]
    if not found:
        count = f"{len(rows)} location{'' if len(rows) == 1 else 's'}"
        return [CheckResult(NAME, True, f"every location has a current IANA zone ({count})")]
    results = [
        CheckResult(
            NAME,
            True,
            f"location {location_id} ({name}): {warning} "
            f"(`calnotify locations update {location_id} --timezone ZONE`)",
            warning=True,
        )
        for location_id, name, warning in found[:_MOST_SHOWN]
    ]
    if len(found) > _MOST_SHOWN:
        more = len(found) - _MOST_SHOWN
        results.append(
            CheckResult(NAME, True, f"and {more} more locations like these", warning=True)
        )
    return results


async def _locations(settings: Settings) -> list[tuple[str, str, str]]:
    engine = create_async_engine(async_url(settings.database_url), poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            result = await connection.execute(
                select(Location.id, Location.name, Location.timezone).order_by(
                    Location.date_added, Location.id
                )
            )
            return [(row.id, row.name, row.timezone) for row in result]
    finally:
        await engine.dispose()
