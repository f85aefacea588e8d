"""HighLevel's Locations operations, for the token's own location."""

from __future__ import annotations

from fastapi import APIRouter

from calnotify.auth.deps import LocationsRead, LocationsWrite
from calnotify.deps import SessionDep
from calnotify.locations import service
from calnotify.locations.schemas import LocationEnvelope, LocationOut, LocationUpdate

router = APIRouter(prefix="/locations", tags=["Locations"])


@router.get(
    "/{locationId}",
    response_model=LocationEnvelope,
    response_model_exclude_none=True,
    operation_id="get-location",
)
async def get_location(
    locationId: str, principal: LocationsRead, session: SessionDep
) -> LocationEnvelope:
    location = await service.get_location(session, principal, locationId)
    return LocationEnvelope(location=service.to_out(location))


@router.put(
    "/{locationId}",
    response_model=LocationOut,
    response_model_exclude_none=True,
    operation_id="put-location",
)
async def update_location(
    locationId: str, body: LocationUpdate, principal: LocationsWrite, session: SessionDep
) -> LocationOut:
    return service.to_out(await service.update_location(session, principal, locationId, body))
