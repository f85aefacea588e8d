from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from calnotify.db.base import Base


class ConsoleSession(Base):
    """A signed-in operator console: the browser holds a random secret, this row its hash.

    The session acts with the token it was opened with, so revoking that token (or
    deleting its location) ends the session on the next request.
    """

    __tablename__ = "console_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_id: Mapped[str] = mapped_column(
        ForeignKey("api_tokens.id", ondelete="CASCADE"), index=True
    )
    # The location an operator's session looks at (a location token's session: its own).
    location_id: Mapped[str | None] = mapped_column(
        ForeignKey("locations.id", ondelete="SET NULL"), default=None
    )
    # The token every form of the session carries back (CSRF).
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
