from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from calnotify.db.base import Base
from calnotify.models._mixins import IdMixin, TimestampsMixin


class UserRole(StrEnum):
    ADMIN = "admin"
    USER = "user"


class User(IdMixin, TimestampsMixin, Base):
    """A team member of a location: an assigned user, a business recipient, an inbox owner."""

    __tablename__ = "users"
    __table_args__ = (Index(None, "location_id", "deleted"),)

    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"))
    first_name: Mapped[str] = mapped_column(String(255), default="")
    last_name: Mapped[str] = mapped_column(String(255), default="")
    email: Mapped[str] = mapped_column(String(320))
    phone: Mapped[str] = mapped_column(String(32), default="")
    role: Mapped[str] = mapped_column(String(16), default=UserRole.USER)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)

    @property
    def name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p)
