"""Every delivery of the location, filterable by status, reason, channel, type and day,
newest first and paged; the Health page's counts link here pre-filtered."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from calnotify.auth.scopes import Scope
from calnotify.auth.sessions import Operator
from calnotify.console import words
from calnotify.console.pages import day_of
from calnotify.console.web import (
    PAGE,
    ConsoleRoute,
    last_page,
    page_number,
    render,
    signed_in,
)
from calnotify.deliveries import service as deliveries
from calnotify.deps import ReadSessionDep
from calnotify.timefmt import parse_instant, zone

router = APIRouter(route_class=ConsoleRoute)

Choice = Annotated[str, Query(max_length=32)]


@router.get("/messages")
async def messages(
    request: Request,
    operator: Annotated[Operator, signed_in(Scope.EVENTS_READ)],
    session: ReadSessionDep,
    status: Choice = "",
    reason: Choice = "",
    channel: Choice = "",
    kind: Annotated[str, Query(alias="type", max_length=32)] = "",
    start: Annotated[str, Query(alias="from", max_length=40)] = "",
    end: Annotated[str, Query(alias="to", max_length=40)] = "",
    since_text: Annotated[str, Query(alias="since", max_length=40)] = "",
    page: Annotated[str, Query(max_length=12)] = "1",
) -> Response:
    where = zone(operator.location_zone)
    chosen = {
        "status": status if status in words.STATUSES else "",
        "reason": reason if reason in words.REASONS else "",
        "channel": channel if channel in words.CHANNELS else "",
        "type": kind if kind in words.TRIGGERS else "",
    }
    errors: dict[str, str] = {}
    first_day = day_of(start, where, errors, "from")
    until = day_of(end, where, errors, "to", last=True)
    if first_day and until and until <= first_day:
        errors["to"] = "must be on or after the first day"
    changed = parse_instant(since_text, where) if since_text else None
    if since_text and changed is None:
        errors["since"] = "must be a date and time like 2030-01-31T09:00Z"
    number = page_number(page)
    rows: list[object] = []
    total = 0
    if not errors:
        found, total = await deliveries.list_deliveries(
            session,
            operator.principal,
            {
                "status": chosen["status"] or None,
                "reason": chosen["reason"] or None,
                "channel": chosen["channel"] or None,
                "notification_type": chosen["type"] or None,
            },
            PAGE,
            (number - 1) * PAGE,
            due=(first_day, until),
            changed_since=changed,
            newest_first=True,
        )
        rows = list(found)
    last = last_page(total, PAGE, number, "messages")
    query = {**chosen, "from": start, "to": end, "since": since_text}
    return render(
        request,
        "messages.html",
        {
            "rows": rows,
            "total": total,
            "chosen": chosen,
            "start": start,
            "end": end,
            "since": changed,
            "since_text": since_text if changed else "",
            "errors": errors,
            "page": number,
            "pages": last,
            "base": "?" + urlencode({k: v for k, v in query.items() if v}) + "&",
            "zone": where,
            "words": words,
        },
        status=400 if errors else 200,
        operator=operator,
    )
