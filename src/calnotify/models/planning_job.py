from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from calnotify.db.base import Base
from calnotify.models._mixins import IdMixin


class PlanningJobKind(StrEnum):
    RULE = "rule"  # re-plan one rule over its calendar's appointments
    CALENDAR = "calendar"  # cancel what a deleted calendar still had pending


class PlanningJobStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    SUPERSEDED = "superseded"  # a newer change of the same rule took over


class PlanningJob(IdMixin, Base):
    """Planning work proportional to a calendar's size, done page by page in the background.

    ``cursor`` is where the last page ended; each page and its cursor are written in one
    short transaction, so a crash resumes where the last committed page left off.
    """

    __tablename__ = "planning_jobs"
    __table_args__ = (
        Index(None, "status", "created_at"),
        Index(None, "notification_id", "status"),
    )

    location_id: Mapped[str] = mapped_column(String(20))
    calendar_id: Mapped[str] = mapped_column(String(20))
    notification_id: Mapped[str] = mapped_column(String(20), default="")
    # The rule's version this job plans; a job for an older version is superseded.
    notification_version: Mapped[int] = mapped_column(Integer, default=0)
    kind: Mapped[str] = mapped_column(String(16))
    # A new rule's job: nothing of it is planned yet, so pages are written without lookups.
    fresh: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default=PlanningJobStatus.PENDING)
    cursor: Mapped[str] = mapped_column(String(64), default="")
    pages: Mapped[int] = mapped_column(Integer, default=0)
    items: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
