"""The action links of a message: ``<CALNOTIFY_PUBLIC_URL>/a/<token>`` (docs/semantics.md §8).

Computed where a message is drafted, from the secret the process keeps
(:class:`calnotify.actions.keys.LinkKeys`): an HMAC in memory, no database round trip.
"""

from __future__ import annotations

from dataclasses import dataclass

from calnotify.actions.tokens import PREVIEW_TOKEN, Key, sign

# Where links point when CALNOTIFY_PUBLIC_URL is not set (``calnotify check`` says so).
LOCAL_URL = "http://localhost:8000"
PAGE_PREFIX = "/a/"


def base_url(public_url: str) -> str:
    """The address links start with: ``CALNOTIFY_PUBLIC_URL``, else localhost."""
    return public_url.strip().rstrip("/") or LOCAL_URL


def links_of(page: str) -> dict[str, str]:
    """The three merge fields for the page at ``page``."""
    return {
        "confirmation_link": page,
        "cancellation_link": f"{page}?do=cancel",
        "reschedule_link": f"{page}?do=reschedule",
    }


def preview_links(public_url: str) -> dict[str, str]:
    """A preview's links: a sample page that says it is a preview and does nothing."""
    return links_of(base_url(public_url) + PAGE_PREFIX + PREVIEW_TOKEN)


@dataclass(frozen=True, slots=True)
class Signer:
    """Makes a message's links with the signing secret (``key``) under ``base``."""

    key: Key
    base: str

    def links(self, appointment_id: str, contact_id: str, channel: str) -> dict[str, str]:
        """The links of the appointment row ``appointment_id`` (an occurrence's own row),
        acting for ``contact_id``, in a message sent on ``channel``."""
        token = sign(self.key, appointment_id, contact_id, channel)
        return links_of(self.base + PAGE_PREFIX + token)
