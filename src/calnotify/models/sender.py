from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from calnotify.db.base import Base, utcnow
from calnotify.models._mixins import IdMixin


class AllowedSender(IdMixin, Base):
    """An address or number a location may send from, set by the operator
    (``calnotify senders add``). Without one, a rule's ``fromAddress`` becomes the Reply-To
    and its ``fromNumber`` is not used (see ``calnotify.channels.senders``).

    ``value`` is normalised: an email address with its domain lowercased and IDNA-encoded
    (``user@xn--bcher-kva.example``), a number in E.164 (``+14155550100``).
    """

    __tablename__ = "allowed_senders"
    __table_args__ = (
        # Also the index of the per-location lookups (location_id is its first column).
        UniqueConstraint("location_id", "kind", "value"),
        # The locations a number belongs to (the one a reply by SMS was sent to).
        Index(None, "kind", "value"),
    )

    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))  # "email" | "number"
    value: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
