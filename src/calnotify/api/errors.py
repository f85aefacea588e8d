"""Every error leaves the service in HighLevel's envelope (see :mod:`calnotify.errors`)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from calnotify.api.middleware import BUSY
from calnotify.console.web import PREFIX as CONSOLE_PREFIX
from calnotify.console.web import error_page
from calnotify.db.gate import Overloaded
from calnotify.errors import AppError, BadRequest, FieldError, envelope

log = logging.getLogger("calnotify.api")

_PREFIXES = ("Value error, ", "Assertion failed, ")


def field_path(loc: tuple[int | str, ...]) -> str:
    """``("body", 2, "channel")`` → ``[2].channel``; ``("query", "limit")`` → ``limit``."""
    parts = loc[1:] if loc and loc[0] in ("body", "query", "path", "header", "cookie") else loc
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or (str(loc[0]) if loc else "")


def _message(error: dict[str, Any]) -> str:
    kind = error.get("type")
    if kind == "json_invalid":
        return "is not valid JSON"
    if kind == "missing":
        return "is required"
    message = str(error.get("msg", "is invalid"))
    for prefix in _PREFIXES:
        message = message.removeprefix(prefix)
    return message


def not_json_problem(content_type: str | None) -> FieldError:
    """The body came as something other than JSON: say so, not "Input should be a list"."""
    if content_type:
        given = content_type.split(";", 1)[0].strip()[:100] or content_type[:100]
        why = f"Content-Type is {given}"
    else:
        why = "no Content-Type was given"
    return FieldError("body", f"must be JSON sent with Content-Type: application/json ({why})")


def validation_errors(
    exc: RequestValidationError, content_type: str | None = None
) -> list[FieldError]:
    errors: list[FieldError] = []
    # FastAPI parses a body as JSON only when its Content-Type is application/json or
    # application/*+json; any other body (text/plain, a form, none given) reaches validation
    # as raw bytes, which no JSON body type accepts.
    raw_body = isinstance(exc.body, bytes | bytearray) and bool(exc.body)
    for error in exc.errors():
        loc = tuple(error.get("loc", ()))
        if raw_body and loc[:1] == ("body",):
            errors.append(not_json_problem(content_type))
            continue
        if error.get("type") == "json_invalid":
            loc = ("body",)
        name = field_path(loc) if loc != ("body",) else "body"
        errors.append(FieldError(name, _message(error)))
    return list(dict.fromkeys(errors))


def install(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_request: Request, exc: AppError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        error = BadRequest(validation_errors(exc, request.headers.get("content-type")))
        return JSONResponse(error.body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404 and request.url.path.startswith(f"{CONSOLE_PREFIX}/"):
            # A console address that is no page: a page that says so, never JSON.
            return error_page(
                request, 404, "Page not found", "There is no console page at this address."
            )
        message = exc.detail if isinstance(exc.detail, str) else "Error"
        if exc.status_code == 404 and message == "Not Found":
            message = "Cannot find the requested resource"
        return JSONResponse(
            envelope(exc.status_code, message),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Overloaded)
    async def _busy(_request: Request, exc: Overloaded) -> JSONResponse:
        # Refused before anything was written: the client may simply try again.
        return JSONResponse(
            envelope(503, BUSY),
            status_code=503,
            headers={"Retry-After": str(max(1, round(exc.retry_after)))},
        )

    @app.exception_handler(DataError)
    async def _data(_request: Request, exc: DataError) -> JSONResponse:
        # The database refused a value (too long, out of range) that validation let by.
        log.warning("database refused a value: %s", str(exc.orig).splitlines()[0])
        error = BadRequest("a value is too long or out of range for what it is stored in")
        return JSONResponse(error.body(), status_code=400)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(envelope(500, "Internal server error"), status_code=500)
