from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from calnotify.db.base import Base
from calnotify.models._mixins import IdMixin


class ServiceProcess(IdMixin, Base):
    """A running ``calnotify serve`` or ``calnotify worker``: its row is written when it
    starts, ``seen_at`` renewed while it runs (the heartbeat), and deleted when it stops.

    Commands that must not run beside the service (``db restore``) look here first.
    """

    __tablename__ = "processes"

    kind: Mapped[str] = mapped_column(String(16))  # serve · worker
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    seen_at: Mapped[datetime] = mapped_column(index=True)
