"""Input types for request bodies and query strings.

HighLevel clients send extra fields (ignored) and ``null`` for fields they do not set
(treated as absent), but a value of the wrong type is a 400, never a silent coercion:
``"true"`` is not a boolean and ``"5"`` is not a number. Query values arrive as text and
are coerced, but only from the spellings docs/api.md lists (see :data:`QueryBool`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Response
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    Strict,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel

MAX_STRING = 4096
MAX_LIST = 50


def _clean(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


Text = Annotated[str, Strict(), AfterValidator(_clean), Field(max_length=MAX_STRING)]
# Names, cities and the like: what their columns hold.
Short = Annotated[str, Strict(), AfterValidator(_clean), Field(max_length=255)]
LongText = Annotated[str, Strict(), AfterValidator(_clean)]
Bool = Annotated[bool, Strict()]
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]

QUERY_TRUE = ("true", "1")
QUERY_FALSE = ("false", "0")


def _query_bool(value: object) -> object:
    if isinstance(value, str):
        text = value.lower()
        if text in QUERY_TRUE:
            return True
        if text in QUERY_FALSE:
            return False
        raise ValueError("must be true or false (or 1 or 0)")
    return value


# A boolean query parameter: ``true``/``false`` in any case, or ``1``/``0``; nothing else
# (pydantic alone would also take yes/no, on/off, t/f, y/n).
QueryBool = Annotated[bool | None, BeforeValidator(_query_bool)]


class InputModel(BaseModel):
    """Base of every request body: camelCase on the wire, extra fields ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )

    def given(self) -> dict[str, object]:
        """The fields the client set to a non-null value."""
        return {
            name: getattr(self, name)
            for name in self.model_fields_set
            if getattr(self, name) is not None
        }


class OutputModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


def format_timestamp(value: datetime) -> str:
    """ISO 8601 in UTC with milliseconds: ``2026-11-24T10:50:03.123Z``."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds")[:23] + "Z"


Timestamp = Annotated[
    datetime,
    PlainSerializer(format_timestamp, return_type=str),
    WithJsonSchema(
        {"type": "string", "format": "date-time", "example": "2026-11-24T10:50:03.123Z"}
    ),
]


def json_problem(value: object, depth: int = 0) -> str | None:
    """Why a free-form JSON value cannot be stored as given, or None."""
    if depth > 8:
        return "is nested too deeply"
    if isinstance(value, str):
        try:
            _clean(value)
        except ValueError as exc:
            return str(exc)
        return None
    if isinstance(value, list):
        return next((p for v in value if (p := json_problem(v, depth + 1))), None)
    if isinstance(value, dict):
        return next(
            (
                p
                for k, v in value.items()
                if (p := json_problem(k, depth + 1) or json_problem(v, depth + 1))
            ),
            None,
        )
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return "must be a finite number"
    return None


class JSONBytes(Response):
    """An answer already written as JSON (the route keeps its ``response_model`` for the
    documentation)."""

    media_type = "application/json"
