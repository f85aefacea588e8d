"""``limit``/``skip`` query parameters of calnotify's own list routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

Limit = Annotated[int, Query(ge=1, le=500, description="Page size (1..500)")]
Skip = Annotated[int, Query(ge=0, le=1_000_000_000, description="Rows to skip")]
IdFilter = Annotated[str | None, Query(max_length=64)]
