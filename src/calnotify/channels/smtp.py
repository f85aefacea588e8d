"""Email over SMTP (aiosmtplib), with connections reused across messages.

SMTP 4xx answers and connection trouble are retryable; 5xx answers are permanent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from email import encoders
from email.header import Header
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import formataddr, formatdate

import aiosmtplib

from calnotify.channels.addresses import email_sender_parts, parse_mailbox
from calnotify.channels.base import (
    ChannelAdapter,
    Message,
    PermanentSendError,
    Receipt,
    RetryableSendError,
)
from calnotify.config import Settings
from calnotify.templates.render import text_to_html

log = logging.getLogger("calnotify.smtp")
_WIRE = compat32.clone(linesep="\r\n")


class SmtpAdapter(ChannelAdapter):
    provider = "smtp"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.concurrency = settings.smtp_connections
        self._idle: asyncio.LifoQueue[aiosmtplib.SMTP] = asyncio.LifoQueue()
        # At most smtp_connections open at once, whoever is sending.
        self._slots = asyncio.Semaphore(settings.smtp_connections)
        _, default_address = parse_mailbox(settings.email_from)
        self.domain = default_address.rpartition("@")[2] or "calnotify.invalid"

    def build(self, message: Message) -> MIMEBase:
        """The MIME message: plain text and HTML alternatives, then any attachments.

        Built with the ``compat32`` classes, four times faster than ``EmailMessage`` here;
        every header value is already free of line breaks (validated addresses, names and
        subjects with whitespace collapsed), and non-ASCII text is RFC 2047 encoded.
        """
        body: MIMEBase = MIMEMultipart("alternative")
        body.attach(MIMEText(message.body or " ", "plain", "utf-8"))
        body.attach(MIMEText(message.html or text_to_html(message.body), "html", "utf-8"))
        root = body
        if message.attachments:
            root = MIMEMultipart("mixed")
            root.attach(body)
            for attachment in message.attachments:
                maintype, _, subtype = attachment.content_type.partition("/")
                part = MIMEBase(maintype, subtype)
                for key, value in attachment.params:
                    part.set_param(key, value)
                part.set_payload(attachment.data)
                encoders.encode_base64(part)
                part.add_header("Content-Disposition", "attachment", filename=attachment.filename)
                root.attach(part)
        name, address = email_sender_parts(message, self.settings.email_from)
        root["From"] = formataddr((name, address)) if name else address
        root["To"] = message.to
        subject = message.subject
        root["Subject"] = subject if subject.isascii() else Header(subject, "utf-8").encode()
        root["Date"] = formatdate(localtime=False, usegmt=True)
        # Deterministic: a message retried after a crash carries the same id, so mail
        # systems can tell the copies apart from two different messages.
        root["Message-ID"] = f"<{message.delivery_id}@{self.domain}>"
        return root

    async def send(self, message: Message) -> Receipt:
        try:
            email = self.build(message)
        except (ValueError, TypeError) as exc:  # an address or header Python refuses
            raise PermanentSendError(f"cannot build the email: {exc}") from exc
        sender = email_sender_parts(message, self.settings.email_from)[1]
        async with self._slots:
            return await self._send(email, sender, message.to)

    async def _send(self, email: MIMEBase, sender: str, recipient: str) -> Receipt:
        connection = await self._acquire()
        healthy = True
        try:
            # The envelope is given, not parsed back out of the headers, and the message is
            # flattened once, plainly (aiosmtplib's own flattening re-folds every header).
            await connection.sendmail(sender, [recipient], email.as_bytes(policy=_WIRE))
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            raise _by_code(min(codes) if codes else 550, str(exc)) from exc
        except aiosmtplib.SMTPResponseException as exc:
            healthy = exc.code < 500 and exc.code != 421
            raise _by_code(exc.code, exc.message) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            healthy = False
            raise RetryableSendError(f"SMTP: {type(exc).__name__}: {exc}") from exc
        finally:
            await self._release(connection, healthy)
        return Receipt(self.provider, email["Message-ID"])

    async def _acquire(self) -> aiosmtplib.SMTP:
        while not self._idle.empty():
            connection = self._idle.get_nowait()
            if connection.is_connected:
                return connection
        s = self.settings
        connection = smtp_client(s)
        try:
            await connection.connect()
            if s.smtp_username:
                await connection.login(s.smtp_username, s.smtp_password.get_secret_value())
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise RetryableSendError(f"SMTP login refused: {exc.code}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise _by_code(exc.code, exc.message) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise RetryableSendError(f"SMTP connect: {type(exc).__name__}: {exc}") from exc
        return connection

    async def _release(self, connection: aiosmtplib.SMTP, healthy: bool) -> None:
        if healthy and connection.is_connected:
            self._idle.put_nowait(connection)
            return
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            connection.close()

    async def close(self) -> None:
        while not self._idle.empty():
            connection = self._idle.get_nowait()
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                await connection.quit()


def smtp_client(settings: Settings, *, timeout: float | None = None) -> aiosmtplib.SMTP:
    """An unconnected client for the configured server. Its ``connect()`` opens the
    connection with the configured security: implicit TLS (``tls``), or EHLO then STARTTLS
    (``starttls``, failing when the server does not offer it), or plain (``none``).

    ``timeout`` (default ``CALNOTIFY_SMTP_TIMEOUT``) bounds each step. Shared by the
    adapter and ``calnotify check``, so that both connect the same way.
    """
    return aiosmtplib.SMTP(
        hostname=settings.smtp_host,
        port=settings.smtp_port_or_default,
        use_tls=settings.smtp_security == "tls",
        start_tls=settings.smtp_security == "starttls",
        timeout=settings.smtp_timeout if timeout is None else timeout,
    )


def _by_code(code: int, text: str) -> RetryableSendError | PermanentSendError:
    message = f"SMTP {code}: {text}"[:1000]
    if 400 <= code < 500:
        return RetryableSendError(message)
    return PermanentSendError(message)
