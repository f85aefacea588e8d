"""``/console``: the operator console (docs/console.md).

Pages are rendered on the server from Jinja2 templates; htmx (vendored, no build step)
swaps the content area on navigation and refreshes the rule preview as it is typed.
Every page works without JavaScript.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import RedirectResponse, Response

from calnotify.auth.sessions import (
    COOKIE,
    LIFETIME,
    SIGN_IN_COOKIE,
    close_session,
    new_secret,
    open_session,
    same,
    token_principal,
)
from calnotify.auth.tokens import Principal
from calnotify.console import deployment, desk, messages, pages, people, rules, template_pages
from calnotify.console.web import (
    PREFIX,
    Answered,
    ConsoleRoute,
    OperatorDep,
    first,
    now_utc,
    read_form,
    render,
)
from calnotify.deps import ReadSessionDep, SessionDep

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)


def _secure(request: Request) -> bool:
    public_url: str = getattr(request.app.state.settings, "public_url", "") or ""
    return public_url.lower().startswith("https://")


def _next(target: str | None) -> str:
    """Where to go after signing in: a console page of this site, nothing else."""
    if not target:
        return f"{PREFIX}/calendars"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(PREFIX) or "\\" in target:
        return f"{PREFIX}/calendars"
    if parts.path.startswith(f"{PREFIX}/sign-"):
        return f"{PREFIX}/calendars"
    return target


@router.get("")
async def console_home() -> Response:
    return RedirectResponse(f"{PREFIX}/calendars", status_code=303)


def _sign_in_page(request: Request, target: str, error: str = "", status: int = 200) -> Response:
    csrf = new_secret()
    response = render(
        request,
        "sign_in.html",
        {"csrf": csrf, "next": target, "error": error},
        status=status,
    )
    response.set_cookie(
        SIGN_IN_COOKIE,
        csrf,
        max_age=3600,
        path=f"{PREFIX}/sign-in",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


@router.get("/sign-in")
async def sign_in_form(
    request: Request, next_page: Annotated[str | None, Query(alias="next")] = None
) -> Response:
    return _sign_in_page(request, _next(next_page))


async def signing_in(request: Request, reader: ReadSessionDep) -> tuple[Principal, str]:
    """The sign-in form's token and where to go next; a refusal is answered at once, in
    the read unit, never waiting for the write lock."""
    fields = await read_form(request, None)
    target = _next(first(fields, "next"))
    if not same(first(fields, "csrf"), request.cookies.get(SIGN_IN_COOKIE, "")):
        raise Answered(
            _sign_in_page(
                request, target, "The sign-in form expired. Please try again.", status=403
            )
        )
    principal = await token_principal(reader, first(fields, "token"))
    if principal is None:
        raise Answered(
            _sign_in_page(
                request,
                target,
                "Invalid token: the access token is unknown or has been revoked.",
                status=401,
            )
        )
    return principal, target


@router.post("/sign-in")
async def sign_in(
    request: Request,
    attempt: Annotated[tuple[Principal, str], Depends(signing_in)],
    session: SessionDep,
) -> Response:
    principal, target = attempt
    # Signing in again ends the session this browser had (it is not left to expire).
    await close_session(session, request.cookies.get(COOKIE))
    secret = await open_session(session, principal, now_utc(request))
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        secret,
        max_age=int(LIFETIME.total_seconds()),
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    response.delete_cookie(SIGN_IN_COOKIE, path=f"{PREFIX}/sign-in")
    return response


@router.post("/sign-out")
async def sign_out(request: Request, operator: OperatorDep, session: SessionDep) -> Response:
    await read_form(request, operator.csrf)
    await close_session(session, request.cookies.get(COOKIE))
    response = RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


router.include_router(deployment.router)
router.include_router(rules.router)
router.include_router(pages.router)
router.include_router(template_pages.router)
router.include_router(desk.router)
router.include_router(people.router)
router.include_router(messages.router)
