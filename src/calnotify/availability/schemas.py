"""Wire shapes of ``GET /calendars/{calendarId}/free-slots`` (HighLevel's ``get-slots``)."""

from __future__ import annotations

from pydantic import BaseModel, Field, RootModel

MAX_USERS = 50


class FreeSlotsQuery(BaseModel):
    """The query string, read as one parameter."""

    start_date: float = Field(
        alias="startDate",
        allow_inf_nan=False,
        title="Startdate",
        description="Start of the range, epoch milliseconds (the range is at most 31 days)",
    )
    end_date: float = Field(
        alias="endDate",
        allow_inf_nan=False,
        title="Enddate",
        description="End of the range, epoch milliseconds, included",
    )
    timezone: str | None = Field(
        None,
        max_length=64,
        description="IANA zone the days and slots are given in (default: the location's)",
    )
    user_id: str | None = Field(
        None, alias="userId", max_length=64, description="A team member the slots are for"
    )
    user_ids: list[str] | None = Field(
        None,
        alias="userIds",
        max_length=MAX_USERS,
        description="Team members the slots are for (any of them)",
    )

    def named_users(self) -> list[tuple[str, str]]:
        """The users asked about, each with the parameter that named it."""
        named = [("userId", self.user_id)] if self.user_id else []
        named += [(f"userIds[{i}]", user) for i, user in enumerate(self.user_ids or []) if user]
        return named


class DaySlots(BaseModel):
    """HighLevel's ``SlotsSchema``: the free slots of one day."""

    slots: list[str]


class FreeSlotsOut(RootModel[dict[str, DaySlots]]):
    """Free slots by day (``YYYY-MM-DD`` in the zone asked for)."""
