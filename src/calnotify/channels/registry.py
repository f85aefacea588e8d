"""Which adapter carries which channel, from the settings."""

from __future__ import annotations

from calnotify.channels.base import ChannelAdapter
from calnotify.channels.inapp import InAppAdapter, InboxListener
from calnotify.channels.outbox import OutboxAdapter
from calnotify.channels.smtp import SmtpAdapter
from calnotify.channels.twilio import TwilioAdapter
from calnotify.clock import Clock
from calnotify.config import Settings
from calnotify.db.engine import Database
from calnotify.hooks.channel import WebhookAdapter


def build_channels(
    settings: Settings,
    db: Database,
    clock: Clock,
    inbox_listener: InboxListener | None = None,
) -> dict[str, ChannelAdapter]:
    """Every channel's adapter. A channel with no provider configured uses the outbox."""
    outbox = OutboxAdapter(db, clock, settings.email_from, settings.twilio_from_number)
    twilio = TwilioAdapter(settings) if settings.twilio_configured else None
    inbox = InAppAdapter(db, clock)
    if inbox_listener is not None:
        inbox.listeners.append(inbox_listener)
    return {
        "email": SmtpAdapter(settings) if settings.smtp_configured else outbox,
        "sms": twilio or outbox,
        "whatsapp": twilio or outbox,
        "inApp": inbox,
        "webhook": WebhookAdapter(settings, db, clock),
    }


async def close_channels(channels: dict[str, ChannelAdapter]) -> None:
    for adapter in {id(a): a for a in channels.values()}.values():
        await adapter.close()
