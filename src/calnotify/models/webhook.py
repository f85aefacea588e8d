from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from calnotify.db.base import Base, utcnow
from calnotify.models._mixins import IdMixin


class WebhookEndpoint(IdMixin, Base):
    """A URL of a location that is told of its appointments' changes and its replies
    (docs/semantics.md §8, "Outbound webhooks"); each event is a delivery of channel
    ``webhook`` to it.

    ``events`` is the event types, space separated; ``secret`` is the Standard Webhooks
    signing secret (``whsec_…``), kept as is because every send is signed with it.
    ``disabled_at``: the endpoint answered 410 Gone, and nothing more is sent to it.
    ``previous_secret``: the secret before the last rotation; until ``previous_secret_until``
    each request is signed with it too, so a receiver can switch without losing events.
    """

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index(None, "location_id", "created_at"),)

    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(320))
    events: Mapped[str] = mapped_column(String(255))
    secret: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(default=None)
    previous_secret: Mapped[str] = mapped_column(String(128), default="")
    previous_secret_until: Mapped[datetime | None] = mapped_column(default=None)
