"""The console's plumbing: templates, the signed-in operator, forms, HTML errors.

Console routes use :class:`ConsoleRoute`, so every error of a page — an unknown or
another location's id, a missing scope, a bad form — is an HTML page with the right
status, never the API's JSON envelope.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote
from zoneinfo import ZoneInfo

import jinja2
from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import HTMLResponse, RedirectResponse, Response

from calnotify import __version__
from calnotify.auth.scopes import Scope
from calnotify.auth.sessions import COOKIE, Operator, find_operator, same
from calnotify.deps import ReadSessionDep, get_clock
from calnotify.errors import AppError
from calnotify.timefmt import zone

PREFIX = "/console"
#: Rows on a page of a list.
PAGE = 50
HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
MAX_FORM_FIELDS = 400

environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

# The console's pages load only their own files; a rendered message shown in the console
# (an HTML email in a sandboxed frame) may style itself but never run a script.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
        "frame-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class SignInRequired(Exception):
    """No valid session: the visitor is shown the sign-in form."""


class Answered(Exception):
    """A dependency that has already decided the answer (before the write unit opens)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class PageError(Exception):
    """A page that cannot be shown, as an HTML page with this status."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


def render(
    request: Request,
    name: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    operator: Operator | None = None,
) -> HTMLResponse:
    values: dict[str, Any] = {
        "request": request,
        "operator": operator,
        # Whether the session's token holds a scope: a page shows a part only then.
        "can": operator.principal.can if operator is not None else _nothing,
        "path": request.url.path,
        "version": __version__,
        "prefix": PREFIX,
        "partial": request.headers.get("HX-Request") == "true"
        and request.headers.get("HX-Boosted") != "true",
    }
    values.update(context or {})
    html = environment.get_template(name).render(values)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _nothing(_scope: str) -> bool:
    return False


def error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    """An error as a page, or as a fragment for an htmx swap into part of a page (the
    rule preview): never a whole layout inside another."""
    operator = getattr(request.state, "console_operator", None)
    fragment = (
        request.headers.get("HX-Request") == "true" and request.headers.get("HX-Boosted") != "true"
    )
    return render(
        request,
        "_error.html" if fragment else "error.html",
        {"title": title, "message": message},
        status=status,
        operator=operator,
    )


class ConsoleRoute(APIRoute):
    """A console page: errors become HTML pages, a missing session the sign-in form."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                target = request.url.path
                if request.url.query:
                    target += "?" + request.url.query
                if request.method != "GET":
                    target = PREFIX
                location = f"{PREFIX}/sign-in?next={quote(target, safe='')}"
                if request.headers.get("HX-Request") == "true":
                    return Response(status_code=204, headers={"HX-Redirect": location})
                return RedirectResponse(location, status_code=303)
            except Answered as exc:
                return exc.response
            except PageError as exc:
                return error_page(request, exc.status, exc.title, exc.message)
            except RequestValidationError:
                return error_page(request, 400, "Bad request", "The address is not valid.")
            except AppError as exc:
                titles = {404: "Not found", 403: "Forbidden", 401: "Not allowed"}
                return error_page(
                    request, exc.status_code, titles.get(exc.status_code, "Error"), exc.message
                )

        return page


async def current_operator(request: Request, reader: ReadSessionDep) -> Operator:
    """The signed-in operator, looked up in the read unit (never behind the write lock)."""
    operator = await find_operator(reader, request.cookies.get(COOKIE), get_clock(request).now())
    if operator is None:
        raise SignInRequired()
    request.state.console_operator = operator
    return operator


class SignedIn:
    """A console route's one dependency: the signed-in operator, whose token holds every
    scope the route's answer needs (a page that lacks one names it). Each console route
    declares it, and a test holds every route to that."""

    def __init__(self, scopes: tuple[Scope, ...], *, operators_only: bool = False) -> None:
        self.scopes = scopes
        self.operators_only = operators_only

    async def __call__(self, request: Request, reader: ReadSessionDep) -> Operator:
        operator = await current_operator(request, reader)
        if self.operators_only and not operator.principal.operator:
            raise PageError(
                403,
                "Not allowed",
                "This page is for the people who run the service: sign in with an operator "
                "token (calnotify tokens create --operator).",
            )
        missing = [s.value for s in self.scopes if not operator.principal.can(s)]
        if missing:
            raise PageError(
                403,
                "Not allowed",
                "The token this console was opened with does not have the "
                f"{' and '.join(missing)} scope{'s' if len(missing) > 1 else ''}.",
            )
        return operator


def signed_in(*scopes: Scope, operators_only: bool = False) -> Any:
    """``Annotated[Operator, signed_in(Scope.EVENTS_READ)]``: the route needs a session
    whose token holds ``scopes`` (``operators_only``: an operator token's session)."""
    return Depends(SignedIn(scopes, operators_only=operators_only))


OperatorDep = Annotated[Operator, signed_in()]


async def read_form(request: Request, csrf: str | None) -> dict[str, list[str]]:
    """An url-encoded form's fields; with ``csrf``, refused unless it carries that token."""
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise PageError(400, "Bad request", "Forms are sent as application/x-www-form-urlencoded.")
    raw = await request.body()
    try:
        fields = parse_qs(
            raw.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise PageError(400, "Bad request", "The form could not be read.") from exc
    if csrf is not None and not same(first(fields, "csrf"), csrf):
        raise PageError(
            403,
            "Form expired",
            "This form is no longer valid (its security token does not match). "
            "Reload the page and try again.",
        )
    return fields


def first(fields: Mapping[str, list[str]], name: str) -> str:
    values = fields.get(name)
    return values[0] if values else ""


# --- showing values ---------------------------------------------------------------


def local(moment: datetime | None, where: ZoneInfo | str) -> str:
    """An instant in a zone, as people read it: ``Tue 1 Jan 2030, 09:00 EST``."""
    if moment is None:
        return ""
    tz = where if isinstance(where, ZoneInfo) else zone(where)
    shown = moment.astimezone(tz)
    return f"{shown:%a} {shown.day} {shown:%b %Y, %H:%M} {shown.tzname()}"


def age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def pages(total: int, size: int) -> int:
    return max(1, math.ceil(total / size))


def last_page(total: int, size: int, number: int, what: str) -> int:
    """How many pages ``total`` rows make; a page past the last is a page that says so."""
    last = pages(total, size)
    if number > last:
        count = "is 1 page" if last == 1 else f"are {last} pages"
        raise PageError(
            404, "No such page", f"Page {number} is past the last: there {count} of {what}."
        )
    return last


def page_number(value: str | None, last: int | None = None) -> int:
    try:
        number = int(value or "1")
    except ValueError:
        number = 1
    number = max(1, min(number, 1_000_000))
    return min(number, last) if last else number


def now_utc(request: Request) -> datetime:
    return get_clock(request).now().astimezone(UTC)


environment.filters["local"] = local
environment.globals["age"] = age
