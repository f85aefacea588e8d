"""The ``webhook`` channel: one signed POST per delivery, with httpx
(docs/semantics.md §8, "Outbound webhooks").

Answers, like the Twilio adapter's: a 2xx is sent (the body is never read); 410 Gone
disables the endpoint (nothing more is sent to it) and fails the delivery; 408, 425, 429 and
5xx are retried after the back-off, honouring ``Retry-After``; any other answer (other 4xx,
a redirect, which is never followed) fails it. Network trouble before the request is
written is retried; a timeout or dropped connection after it was written is retried too,
marked "may have acted": delivery is at least once, and each retry carries the same
``webhook-id`` so a receiver can drop a repeat. Each step (connect, write, each read)
has ``CALNOTIFY_WEBHOOK_TIMEOUT``, and the whole attempt twice that: an endpoint that
hangs or drips its answer holds one of the adapter's connections that long, never more.

Before connecting, the URL's host name is resolved and every address checked
(:mod:`calnotify.hooks.urls`); the request then goes to the checked address, with the
name in ``Host`` and in TLS (SNI and certificate checks).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from datetime import datetime

import httpx
from sqlalchemy import bindparam, update

from calnotify.channels.base import (
    ChannelAdapter,
    Message,
    PermanentSendError,
    Receipt,
    RetryableSendError,
)
from calnotify.channels.twilio import retry_after
from calnotify.clock import Clock
from calnotify.config import Settings
from calnotify.db.engine import DATABASE_ERRORS, Database
from calnotify.db.statements import Statement, table
from calnotify.db.tx import Tx
from calnotify.hooks import signing
from calnotify.hooks.prepare import Target
from calnotify.hooks.urls import WebhookURLError, is_public, parse
from calnotify.models import WebhookEndpoint

log = logging.getLogger("calnotify.webhooks")
RETRYABLE = {408, 425, 429}
#: Resolves a host name and port to IP addresses.
Resolver = Callable[[str, int], Awaitable[list[str]]]
_E = WebhookEndpoint.__table__.c
_DISABLE = Statement(
    update(table(WebhookEndpoint))
    .where(_E.id == bindparam("b_id"), _E.disabled_at.is_(None))
    .values(disabled_at=bindparam("now"))
)


async def resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class WebhookAdapter(ChannelAdapter):
    provider = "webhook"
    concurrency = 16

    def __init__(
        self,
        settings: Settings,
        db: Database,
        clock: Clock,
        transport: httpx.AsyncBaseTransport | None = None,
        resolver: Resolver = resolve,
    ) -> None:
        self.db = db
        self.clock = clock
        self.allow_private = settings.webhook_allow_private
        self.timeout = settings.webhook_timeout
        self.send_timeout = settings.webhook_timeout * 2
        self.resolver = resolver
        self.client = httpx.AsyncClient(
            timeout=settings.webhook_timeout, transport=transport, follow_redirects=False
        )

    async def send(self, message: Message) -> Receipt:
        target = message.prepared
        if not isinstance(target, Target):
            raise PermanentSendError("webhook: no endpoint to send to")
        url, host = await self._pinned(message.to)
        body = message.body.encode()
        at = int(self.clock.now().timestamp())
        headers = {
            **signing.headers(target.secret, message.delivery_id, at, body, target.previous),
            "host": host,
            "user-agent": "calnotify-webhooks",
        }
        sni = {"sni_hostname": host.rsplit(":", 1)[0].strip("[]")}
        try:
            request = self.client.build_request(
                "POST", url, content=body, headers=headers, extensions=sni
            )
            response = await self.client.send(request, stream=True)
            await response.aclose()  # the answer's body is never read
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise RetryableSendError(f"webhook: cannot connect: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            raise RetryableSendError(
                f"webhook: no answer: {type(exc).__name__}", maybe_sent=True
            ) from exc
        status = response.status_code
        if 200 <= status < 300:
            return Receipt(self.provider, message.delivery_id)
        detail = f"webhook: the endpoint answered {status}"
        if status == 410:
            await self._disable(target.endpoint_id)
            raise PermanentSendError(detail + " Gone: the endpoint is disabled")
        if status in RETRYABLE or status >= 500:
            raise RetryableSendError(detail, retry_after=retry_after(response))
        raise PermanentSendError(detail)

    async def _pinned(self, url: str) -> tuple[str, str]:
        """The URL to request (its host replaced by a checked address) and the ``Host``."""
        try:
            parts = parse(url)
        except WebhookURLError as exc:
            raise PermanentSendError(f"webhook: the URL {exc}") from None
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            async with asyncio.timeout(self.timeout):
                addresses = await self.resolver(host, port)
        except (OSError, TimeoutError) as exc:
            raise RetryableSendError(f"webhook: cannot resolve {host}: {exc}") from exc
        if not addresses:
            raise RetryableSendError(f"webhook: cannot resolve {host}")
        if not self.allow_private and not all(is_public(a) for a in addresses):
            raise PermanentSendError(
                f"webhook: {host} resolves to a private address (see "
                "CALNOTIFY_WEBHOOK_ALLOW_PRIVATE)"
            )
        address = addresses[0]
        shown = f"[{address}]" if ":" in address else address
        netloc = shown if parts.port is None else f"{shown}:{parts.port}"
        hostport = parts.netloc.rsplit("@", 1)[-1]
        return parts._replace(netloc=netloc).geturl(), hostport

    async def _disable(self, endpoint_id: str) -> None:
        now: datetime = self.clock.now()

        async def work(tx: Tx) -> None:
            tx.write(_DISABLE, {"b_id": endpoint_id, "now": now})

        try:
            await self.db.sends.run(work)
        except DATABASE_ERRORS as exc:
            log.warning("webhook: cannot disable endpoint %s: %s", endpoint_id, exc)
        else:
            log.info("webhook: endpoint %s answered 410 Gone and is disabled", endpoint_id)

    async def close(self) -> None:
        await self.client.aclose()
