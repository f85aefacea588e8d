"""Errors as types, rendered once into HighLevel's (NestJS-style) error envelope.

    AppError                    any error that becomes an HTTP answer
    ├── BadRequest              400, with a list of FieldError (validation)
    ├── Unauthorized            401, invalid token, operator token or missing scope
    ├── Forbidden               403, a locationId that is not the token's
    ├── NotFound                404, unknown id (or another location's)
    └── PayloadTooLarge         413, request body over CALNOTIFY_MAX_BODY_BYTES

The body is always ``{"statusCode", "message", "error"}``; validation errors add
``errors: [{"field", "message"}]`` and join every problem into ``message`` with "; ", and
a missing scope adds ``scope``, the one the operation needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from typing import Any


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class AppError(Exception):
    status_code: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        return envelope(self.status_code, self.message)


class BadRequest(AppError):
    status_code = 400

    def __init__(self, errors: list[FieldError] | str) -> None:
        if isinstance(errors, str):
            errors = [FieldError("", errors)]
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))

    def body(self) -> dict[str, Any]:
        body = envelope(self.status_code, self.message)
        body["errors"] = [{"field": e.field, "message": e.message} for e in self.errors]
        return body


class Unauthorized(AppError):
    status_code = 401


class InvalidToken(Unauthorized):
    def __init__(self) -> None:
        super().__init__("Invalid token: access token is invalid")


class OperatorToken(Unauthorized):
    def __init__(self) -> None:
        super().__init__(
            "Invalid token: an operator token signs in to the console; the API takes a "
            "location's token"
        )


class MissingScope(Unauthorized):
    """HighLevel's answer to a token without the route's scope, word for word, and the
    scope the route needs in ``scope``."""

    def __init__(self, scope: str) -> None:
        super().__init__("The token is not authorized for this scope.")
        self.scope = scope

    def body(self) -> dict[str, Any]:
        return {**envelope(self.status_code, self.message), "scope": self.scope}


class Forbidden(AppError):
    status_code = 403

    def __init__(self, message: str = "The token does not have access to this location.") -> None:
        super().__init__(message)


class NotFound(AppError):
    status_code = 404


class Conflict(AppError):
    """The request cannot be done in the state the resource is in (the message says why)."""

    status_code = 409


class PayloadTooLarge(AppError):
    status_code = 413


def envelope(status_code: int, message: str) -> dict[str, Any]:
    try:
        phrase = HTTPStatus(status_code).phrase
    except ValueError:
        phrase = "Error"
    return {"statusCode": status_code, "message": message, "error": phrase}
