"""Which adapter carries which channel, from the settings."""

from __future__ import annotations

from calnotify.channels.base import ChannelAdapter
from calnotify.channels.inapp import InAppAdapter
from calnotify.channels.outbox import OutboxAdapter
from calnotify.clock import Clock
from calnotify.config import Settings
from calnotify.db.engine import Database


def build_channels(settings: Settings, db: Database, clock: Clock) -> dict[str, ChannelAdapter]:
    """Every channel's adapter. A channel with no provider configured uses the outbox."""
    outbox = OutboxAdapter(db, clock)
    return {
        "email": outbox,
        "sms": outbox,
        "whatsapp": outbox,
        "inApp": InAppAdapter(db, clock),
    }


async def close_channels(channels: dict[str, ChannelAdapter]) -> None:
    for adapter in {id(a): a for a in channels.values()}.values():
        await adapter.close()
