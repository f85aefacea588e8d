from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from calnotify.db.base import utcnow
from calnotify.ids import new_id


class IdMixin:
    id: Mapped[str] = mapped_column(String(20), primary_key=True, default=new_id)


class TimestampsMixin:
    date_added: Mapped[datetime] = mapped_column(default=utcnow)
    date_updated: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
