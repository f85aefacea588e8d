"""HighLevel's location templates operations (``locations/templates.*`` scopes)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from calnotify.api.types import QueryBool
from calnotify.auth.deps import LocationIdPath, in_path_location
from calnotify.auth.scopes import Scope
from calnotify.auth.tokens import Principal
from calnotify.deps import DatabaseDep, SessionDep
from calnotify.errors import BadRequest, FieldError
from calnotify.templates import service
from calnotify.templates.schemas import (
    TemplateCreate,
    TemplateDeleted,
    TemplateList,
    TemplateOut,
    TemplateType,
    TemplateUpdate,
)

router = APIRouter(prefix="/locations/{locationId}/templates", tags=["Templates"])

MAX_LIMIT = 100
MAX_SKIP = 1_000_000_000

# The path's locationId must be the token's own (else 403).
TemplatesRead = Annotated[Principal, Depends(in_path_location(Scope.TEMPLATES_READ))]
TemplatesWrite = Annotated[Principal, Depends(in_path_location(Scope.TEMPLATES_WRITE))]


@router.get("", response_model=TemplateList, operation_id="GET-all-or-email-sms-templates")
async def list_templates(
    locationId: LocationIdPath,
    principal: TemplatesRead,
    session: SessionDep,
    template_type: Annotated[TemplateType | None, Query(alias="type")] = None,
    deleted: Annotated[
        QueryBool, Query(description="true lists only the deleted templates")
    ] = None,
    limit: Annotated[
        float, Query(description=f"Number of records to return (1..{MAX_LIMIT})")
    ] = MAX_LIMIT,
    skip: Annotated[float, Query(description="Number of records to skip")] = 0,
) -> TemplateList:
    """The location's templates in creation order (deleted ones only with deleted=true)."""
    rows, total = await service.list_templates(
        session,
        principal,
        locationId,
        template_type=template_type,
        deleted=bool(deleted),
        limit=_whole("limit", limit, 1, MAX_LIMIT),
        skip=_whole("skip", skip, 0, MAX_SKIP),
    )
    return TemplateList(templates=[service.to_out(r) for r in rows], total=total, totalCount=total)


@router.post("", response_model=TemplateOut, status_code=201, operation_id="create-template")
async def create_template(
    locationId: LocationIdPath, body: TemplateCreate, principal: TemplatesWrite, db: DatabaseDep
) -> TemplateOut:
    """``{"name", "type", "template": {"subject", "html"}}`` for email,
    ``{"template": {"body"}}`` for sms and whatsapp."""
    return service.to_out(await service.create_template(db, principal, locationId, body))


@router.get("/{templateId}", response_model=TemplateOut, operation_id="get-template")
async def get_template(
    locationId: LocationIdPath, templateId: str, principal: TemplatesRead, db: DatabaseDep
) -> TemplateOut:
    return service.to_out(await service.get_template(db, principal, locationId, templateId))


@router.put("/{templateId}", response_model=TemplateOut, operation_id="update-template")
async def update_template(
    locationId: LocationIdPath,
    templateId: str,
    body: TemplateUpdate,
    principal: TemplatesWrite,
    db: DatabaseDep,
) -> TemplateOut:
    """Partial update. ``type`` cannot change while a notification uses the template."""
    row = await service.update_template(db, principal, locationId, templateId, body)
    return service.to_out(row)


@router.delete(
    "/{templateId}", response_model=TemplateDeleted, operation_id="DELETE-an-email-sms-template"
)
async def delete_template(
    locationId: LocationIdPath, templateId: str, principal: TemplatesWrite, db: DatabaseDep
) -> TemplateDeleted:
    """Soft delete; refused (400) while a notification uses the template."""
    await service.delete_template(db, principal, locationId, templateId)
    return TemplateDeleted()


def _whole(name: str, value: float, low: int, high: int) -> int:
    if not float(value).is_integer() or not low <= value <= high:
        raise BadRequest([FieldError(name, f"must be a whole number from {low} to {high}")])
    return int(value)
