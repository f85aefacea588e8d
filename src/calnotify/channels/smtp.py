"""Email over SMTP (aiosmtplib), with connections reused across messages.

SMTP 4xx answers and connection trouble are retryable; 5xx answers are permanent.

Addresses go out in their wire form: a non-ASCII domain IDNA-encoded, in the envelope and
the headers alike (``user@bücher.example`` → ``user@xn--bcher-kva.example``). A non-ASCII
local part needs SMTPUTF8 (RFC 6531): used when the server offers it, else the message
fails permanently, saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, replace
from email import encoders
from email.header import Header
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import formatdate
from functools import partial

import aiosmtplib

from calnotify.channels.addresses import (
    AddressError,
    email_sender_parts,
    parse_mailbox,
    wire_address,
)
from calnotify.channels.base import (
    ChannelAdapter,
    Message,
    PermanentSendError,
    Receipt,
    RetryableSendError,
    WireBuilder,
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
        # Connect, EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA: each step is bounded by the
        # SMTP timeout; the whole by a few of them.
        self.send_timeout = settings.smtp_timeout * 4
        self._idle: asyncio.LifoQueue[aiosmtplib.SMTP] = asyncio.LifoQueue()
        # At most smtp_connections open at once, whoever is sending.
        self._slots = asyncio.Semaphore(settings.smtp_connections)
        _, default_address = parse_mailbox(settings.email_from)
        try:
            default_domain = wire_address(default_address).address.rpartition("@")[2]
        except AddressError:
            default_domain = ""
        self.domain = default_domain or "calnotify.invalid"

    def wire_builder(self) -> WireBuilder:
        return partial(with_wire_form, email_from=self.settings.email_from, domain=self.domain)

    def _wire(self, message: Message) -> _Wire:
        return wire_form(message, self.settings.email_from, self.domain)

    async def send(self, message: Message) -> Receipt:
        wire = message.prepared
        if not isinstance(wire, _Wire):
            try:
                wire = self._wire(message)
            except (ValueError, TypeError) as exc:  # an address or header Python refuses
                raise PermanentSendError(f"cannot build the email: {exc}") from exc
        async with self._slots:
            return await self._send(wire)

    async def _send(self, wire: _Wire) -> Receipt:
        """One transaction, step by step, so that a failure says how far it got: before
        ``DATA`` nothing was delivered; a connection lost during ``DATA`` may have been."""
        envelope = wire.envelope
        connection = await self._acquire()
        healthy = True
        phase = "MAIL"
        try:
            if connection.is_ehlo_or_helo_needed:
                await connection.ehlo()
            if envelope.utf8_address and not connection.supports_extension("smtputf8"):
                # Checked after EHLO, before anything of the message was sent.
                raise PermanentSendError(
                    "the server does not offer SMTPUTF8, needed for the non-ASCII address "
                    f"{envelope.utf8_address}"
                )
            utf8 = bool(envelope.utf8_address)
            encoding = "utf-8" if utf8 else "ascii"
            options = ["SMTPUTF8"] if utf8 else []
            await connection.mail(envelope.sender, options=options, encoding=encoding)
            phase = "RCPT"
            await connection.rcpt(envelope.recipient, encoding=encoding)
            phase = "DATA"
            await connection.data(wire.data)
        except aiosmtplib.SMTPResponseException as exc:
            # Refused by the server: nothing was delivered. Reset the transaction so the
            # connection can carry the next message.
            healthy = exc.code != 421 and await _reset(connection)
            raise _by_code(exc.code, f"{phase}: {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            healthy = False
            text = f"SMTP: connection lost during {phase}: {type(exc).__name__}: {exc}"
            raise RetryableSendError(text, maybe_sent=phase == "DATA") from exc
        except asyncio.CancelledError:
            healthy = False  # cut off mid-transaction: the connection is not reusable
            raise
        finally:
            await self._release(connection, healthy)
        return Receipt(self.provider, wire.message_id)

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


def mime(message: Message, email_from: str, domain: str) -> tuple[MIMEBase, _Envelope]:
    """The MIME message (plain text and HTML alternatives, then any attachments) and
    its envelope. Raises ``ValueError`` for an address that cannot be sent to or from.

    Built with the ``compat32`` classes, four times faster than ``EmailMessage`` here;
    every header value is already free of line breaks (validated addresses, names and
    subjects with whitespace collapsed), and non-ASCII text is RFC 2047 encoded (except
    addresses with a non-ASCII local part, written as UTF-8 for an SMTPUTF8 transaction).
    """
    name, address = email_sender_parts(message, email_from)
    sender = wire_address(address)
    recipient = wire_address(message.to)
    reply_to = wire_address(message.reply_to) if message.reply_to.strip() else None
    if reply_to is not None and reply_to.address.lower() == sender.address.lower():
        reply_to = None  # replies go to the From anyway
    needs_utf8 = [
        original
        for original, wire in (
            (address, sender),
            (message.to, recipient),
            (message.reply_to, reply_to),
        )
        if wire is not None and wire.smtputf8
    ]
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
    root["From"] = sender.header(name)
    root["To"] = recipient.header()
    if reply_to is not None:
        root["Reply-To"] = reply_to.header()
    subject = message.subject
    root["Subject"] = subject if subject.isascii() else Header(subject, "utf-8").encode()
    root["Date"] = formatdate(localtime=False, usegmt=True)
    # Deterministic: a message retried after a crash carries the same id, so mail
    # systems can tell the copies apart from two different messages.
    root["Message-ID"] = f"<{message.delivery_id}@{domain}>"
    # RFC 3834: sent by a program, so vacation responders and other robots do not answer it.
    root["Auto-Submitted"] = "auto-generated"
    envelope = _Envelope(sender.address, recipient.address, needs_utf8[0] if needs_utf8 else "")
    return root, envelope


def wire_form(message: Message, email_from: str, domain: str) -> _Wire:
    """The email as it goes on the wire: bytes, envelope and Message-ID."""
    email, envelope = mime(message, email_from, domain)
    return _Wire(email.as_bytes(policy=_WIRE), envelope, email["Message-ID"])


def with_wire_form(message: Message, *, email_from: str, domain: str) -> Message:
    """``message`` with its wire form built (CPU work on tenant text, done where messages
    are composed); a message Python refuses to build is left as it is, and ``send`` says
    why."""
    try:
        return replace(message, prepared=wire_form(message, email_from, domain))
    except (ValueError, TypeError):
        return message


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


@dataclass(frozen=True)
class _Envelope:
    sender: str
    recipient: str
    # The first address whose local part is not ASCII (the transaction needs SMTPUTF8).
    utf8_address: str = ""


@dataclass(frozen=True)
class _Wire:
    """An email ready for the wire: its bytes (flattened once, plainly: aiosmtplib's own
    flattening re-folds every header), envelope and Message-ID."""

    data: bytes
    envelope: _Envelope
    message_id: str


async def _reset(connection: aiosmtplib.SMTP) -> bool:
    """RSET after a refused command; whether the connection is fit for another message."""
    try:
        await connection.rset()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        return False
    return True


def _by_code(code: int, text: str) -> RetryableSendError | PermanentSendError:
    message = f"SMTP {code}: {text}"[:1000]
    if 400 <= code < 500:
        return RetryableSendError(message)
    return PermanentSendError(message)
