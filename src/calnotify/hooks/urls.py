"""Which URLs a webhook may be sent to (docs/semantics.md §8, "Outbound webhooks").

A URL is ``https``, or ``http`` to the machine itself (``localhost``, ``127.0.0.1``,
``[::1]``); it carries no user name or password and is at most 320 characters. Unless
``CALNOTIFY_WEBHOOK_ALLOW_PRIVATE`` is set, every address it leads to must be a public one:
not loopback, private (RFC 1918, ULA), link-local (cloud metadata at 169.254.169.254),
shared, multicast or reserved. That is checked when the URL is registered (a literal
address, or ``localhost``) and again at each send, against the addresses its name resolves
to then; the request goes to the address that was checked, so a name that resolves
differently a moment later (DNS rebinding) cannot lead it elsewhere.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import SplitResult, urlsplit

#: As long as a delivery's recipient may be (the URL is recorded as it).
MAX_URL = 320
_LOOPBACK_NAMES = ("localhost", "localhost.")


class WebhookURLError(ValueError):
    """The URL cannot be a webhook endpoint; the text says why."""


def is_public(address: str) -> bool:
    """Whether ``address`` (an IP address) is a public one."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _literal(host: str) -> str | None:
    """``host`` as an IP address, when it is one."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def is_loopback_host(host: str) -> bool:
    literal = _literal(host)
    if literal is not None:
        return ipaddress.ip_address(literal).is_loopback
    return host.lower() in _LOOPBACK_NAMES or host.lower().endswith(".localhost")


def parse(url: str) -> SplitResult:
    """``url`` split, once it reads as a webhook URL (scheme, host, no credentials)."""
    if len(url) > MAX_URL:
        raise WebhookURLError(f"must be at most {MAX_URL} characters")
    if not url.isprintable() or any(c.isspace() for c in url):
        raise WebhookURLError("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise WebhookURLError(f"is not a valid URL: {exc}") from None
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise WebhookURLError("must be an https:// URL with a host name")
    if not host.isascii():
        raise WebhookURLError("must give a non-ASCII host name in its IDNA form (xn--…)")
    if parts.scheme == "http" and not is_loopback_host(host):
        raise WebhookURLError("must use https (http is allowed only for localhost)")
    if parts.username is not None or parts.password is not None:
        raise WebhookURLError("must not contain a user name or password")
    if parts.fragment:
        raise WebhookURLError("must not contain a fragment (#…)")
    return parts


def check_url(url: str, *, allow_private: bool) -> str:
    """``url``, stripped, when it may be registered; else :class:`WebhookURLError`."""
    url = url.strip()
    parts = parse(url)
    host = parts.hostname or ""
    literal = _literal(host)
    private = is_loopback_host(host) or (literal is not None and not is_public(literal))
    if private and not allow_private:
        raise WebhookURLError(
            "must lead to a public address (this deployment does not send webhooks to "
            "private, loopback or link-local addresses: CALNOTIFY_WEBHOOK_ALLOW_PRIVATE)"
        )
    return url
