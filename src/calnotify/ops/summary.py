"""What ``serve`` and ``worker`` log at startup."""

from __future__ import annotations

from calnotify import __version__
from calnotify.actions.links import PAGE_PREFIX, base_url
from calnotify.config import Settings
from calnotify.db.urls import shown_database_url


def startup_summary(settings: Settings, *, mode: str, metrics: str | None = None) -> list[str]:
    """Lines for ``serve`` and ``worker`` to log at startup: version, database (password
    masked), the provider of each channel, Twilio callbacks, where action links point,
    ``mode`` (the caller's
    text, e.g. ``"API + dispatcher (2 loops)"``) and, when given, where the metrics are
    served (a worker's ``http://127.0.0.1:9100/metrics``, or why they are not). Never
    raises."""
    lines = [
        f"calnotify {__version__}",
        f"database: {shown_database_url(settings.database_url)}",
    ]
    if settings.smtp_configured:
        email = (
            f"smtp {settings.smtp_host}:{settings.smtp_port_or_default} {settings.smtp_security}"
        )
        if settings.smtp_username:
            email += f" as {settings.smtp_username}"
    else:
        email = "outbox (CALNOTIFY_SMTP_HOST not set)"
    lines.append(f"email: {email}")
    if settings.twilio_configured:
        base = settings.twilio_base_url.rstrip("/")
        sms_from = settings.twilio_from_number or "nobody (CALNOTIFY_TWILIO_FROM_NUMBER not set)"
        whatsapp_from = (
            settings.twilio_whatsapp_from
            or settings.twilio_from_number
            or "nobody (CALNOTIFY_TWILIO_WHATSAPP_FROM not set)"
        )
        lines.append(f"sms: twilio {base} from {sms_from}")
        lines.append(f"whatsapp: twilio {base} from {whatsapp_from}")
    else:
        outbox = "outbox (CALNOTIFY_TWILIO_ACCOUNT_SID / CALNOTIFY_TWILIO_AUTH_TOKEN not set)"
        lines.append(f"sms: {outbox}")
        lines.append(f"whatsapp: {outbox}")
    lines.append("inApp: inbox")
    if settings.twilio_configured:
        public = settings.public_url.strip()
        callbacks = (
            f"{public.rstrip('/')}/webhooks/twilio/status"
            if public
            else "off (CALNOTIFY_PUBLIC_URL not set)"
        )
        lines.append(f"twilio status callbacks: {callbacks}")
    lines.append(f"action links: {_links(settings)}")
    lines.append(f"mode: {mode}")
    if metrics is not None:
        lines.append(f"metrics: {metrics}")
    return lines


def _links(settings: Settings) -> str:
    """Where the recipients' action links point (docs/semantics.md §8)."""
    if settings.public_url.strip():
        return base_url(settings.public_url) + PAGE_PREFIX + "…"
    return (
        f"{settings.links_url}{PAGE_PREFIX}… "
        "(CALNOTIFY_PUBLIC_URL not set: links point to this machine)"
    )
