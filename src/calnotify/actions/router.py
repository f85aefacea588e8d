"""The recipient's appointment page: ``GET /a/<token>`` and its forms (docs/semantics.md §8).

Server-rendered, no sign-in, no script: a GET only shows (mail scanners fetch links);
``POST /a/<token>/confirm|cancel|reschedule`` act, then send the browser back to the page
(303). A bad, tampered or expired link is a 404 page that says nothing more. Requests are
rate-limited per link and per client address (:mod:`calnotify.actions.limits`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jinja2
from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from calnotify.actions import service
from calnotify.actions.keys import LinkKeys
from calnotify.actions.limits import RateLimit
from calnotify.actions.service import Action, LinkNotFound, Page
from calnotify.actions.tokens import PREVIEW_TOKEN
from calnotify.db.engine import Database
from calnotify.deps import ClockDep, DatabaseDep, PlanningDep
from calnotify.templates.render import DAYS, long_time, only_date

router = APIRouter(prefix="/a", include_in_schema=False)

_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
# No script, no frame, nothing loaded from elsewhere; the token in the address is never
# sent on as a referrer, and the page is never cached or indexed.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
}
MAX_FORM_BYTES = 16_384
# What an action that did not go through says, and its status.
_REFUSED = {
    "stale": (409, "This appointment changed since the page was opened; here it is as it is now."),
    "refused": (409, "This can no longer be done online."),
    "taken": (409, "That time is no longer free; please choose another."),
    "reason_too_long": (400, f"The reason is too long (at most {service.MAX_REASON} characters)."),
}
_DONE = {
    "confirmed": "Thank you: your appointment is confirmed.",
    "cancelled": "Your appointment is cancelled.",
    "rescheduled": "Your appointment has been moved.",
}


def _show(name: str, status: int = 200, **values: Any) -> HTMLResponse:
    html = _environment.get_template(name).render(values)
    headers = dict(HEADERS)
    if status == 429:
        headers["Retry-After"] = "60"
    return HTMLResponse(html, status_code=status, headers=headers)


def _day_label(day: str) -> str:
    """``Monday, December 7, 2026`` for ``2026-12-07``."""
    when = datetime.fromisoformat(day)
    return f"{DAYS[when.weekday()]}, {only_date(when)}"


def _not_found() -> HTMLResponse:
    return _show("not_found.html", 404)


def _limited(request: Request, token: str) -> bool:
    """Count the request; True when its link or its address is over the limit."""
    limit: RateLimit = request.app.state.link_limit
    address = request.client.host if request.client else ""
    return not limit.allow("link:" + token[:64], "address:" + address)


async def _page(request: Request, db: DatabaseDep, clock: ClockDep, token: str) -> Page:
    keys: LinkKeys = request.app.state.link_keys
    return await service.open_page(db, keys, token, clock.now())


# HEAD too: link checkers and mail scanners ask with it.
@router.api_route("/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def appointment_page(
    request: Request, token: str, db: DatabaseDep, clock: ClockDep
) -> Response:
    """The appointment's page (``?do=cancel`` / ``?do=reschedule``: with that form open)."""
    if _limited(request, token):
        return _show("limited.html", 429)
    query = request.query_params
    if token == PREVIEW_TOKEN:
        return _show("preview.html")
    try:
        page = await _page(request, db, clock, token)
    except LinkNotFound:
        return _not_found()
    done = query.get("done", "")
    return await _render(db, page, token, query.get("do", ""), query.get("more", ""), done)


async def _render(
    db: Database,
    page: Page,
    token: str,
    do: str,
    more: str,
    done: str = "",
    *,
    status: int = 200,
    message: str = "",
) -> HTMLResponse:
    reschedule = do == Action.RESCHEDULE and page.allowed(Action.RESCHEDULE)
    ahead = int(more) if more.isdigit() and len(more) < 3 else 0
    slots = await service.slots(db, page, ahead) if reschedule else {}
    a = page.appointment
    return _show(
        "page.html",
        status,
        page=page,
        token=token,
        do=do,
        more=min(ahead, service.MAX_SLOT_PAGES),
        max_more=service.MAX_SLOT_PAGES,
        slots=slots,
        day_label=_day_label,
        when=long_time(a.start_at.astimezone(page.where)),
        minutes=int((a.end_at - a.start_at).total_seconds() // 60),
        done=_DONE.get(done, ""),
        message=message,
        can=page.allowed,
        Action=Action,
        max_reason=service.MAX_REASON,
    )


@router.post("/{token}/{action}", response_class=HTMLResponse)
async def act(
    request: Request,
    token: str,
    action: str,
    db: DatabaseDep,
    clock: ClockDep,
    planning: PlanningDep,
) -> Response:
    """Confirm, cancel or reschedule from the page; back to the page (303) when done."""
    if _limited(request, token):
        return _show("limited.html", 429)
    if action not in Action.__members__.values():
        return _not_found()
    if token == PREVIEW_TOKEN:
        return _show("preview.html")
    try:
        page = await _page(request, db, clock, token)
    except LinkNotFound:
        return _not_found()
    fields = await _form(request)
    if fields is None:
        return await _render(
            db, page, token, "", "", status=400, message="The form could not be read."
        )
    done = await service.act(db, page, Action(action), fields, planning.horizon)
    planning.planned(done.due)
    if done.outcome in _REFUSED:
        status, message = _REFUSED[done.outcome]
        try:
            page = await _page(request, db, clock, token)  # as it is now
        except LinkNotFound:  # deleted meanwhile
            return _not_found()
        return await _render(db, page, token, action, "", status=status, message=message)
    return RedirectResponse(f"/a/{token}?done={done.outcome}", status_code=303, headers=HEADERS)


async def _form(request: Request) -> dict[str, str] | None:
    """The url-encoded form's first value of each field; None when it cannot be read."""
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return None
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        return None
    try:
        fields = parse_qs(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return None
    return {name: values[0] for name, values in fields.items()}
