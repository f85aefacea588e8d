"""Real local stand-ins for the providers: an SMTP server (aiosmtpd) and a Twilio-shaped
HTTP server, each in a thread of its own."""

from __future__ import annotations

import base64
import email
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class SmtpInbox:
    """What the SMTP server received; ``refuse`` maps a recipient to an SMTP answer."""

    messages: list[EmailMessage] = field(default_factory=list)
    # Per message: (MAIL FROM, RCPT TOs, MAIL options, the raw content).
    envelopes: list[tuple[str, list[str], list[str], bytes]] = field(default_factory=list)
    connections: int = 0
    refuse: dict[str, str] = field(default_factory=dict)
    # Hang up once the message's content has arrived, before answering it.
    hang_up_after_data: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        with self.lock:
            self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.hang_up_after_data:
            server.transport.close()
            return "250 never heard"
        raw: bytes = envelope.content
        if envelope.smtp_utf8:  # RFC 6532: headers in UTF-8
            message = email.message_from_string(raw.decode("utf-8"), policy=default)
        else:
            message = email.message_from_bytes(raw, policy=default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.messages.append(message)
            self.envelopes.append(
                (envelope.mail_from, list(envelope.rcpt_tos), list(envelope.mail_options), raw)
            )
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if m["To"] == address]


@contextmanager
def smtp_server(
    *,
    login: tuple[str, str] | None = None,
    starttls: ssl.SSLContext | None = None,
    implicit_tls: ssl.SSLContext | None = None,
    smtputf8: bool = False,
) -> Iterator[tuple[SmtpInbox, int]]:
    """A running SMTP server. ``login`` requires AUTH with that user and password (over a
    plain connection too, unless ``starttls`` is given); ``starttls`` offers STARTTLS with
    that server context; ``implicit_tls`` speaks TLS from the first byte; ``smtputf8``
    offers SMTPUTF8 (RFC 6531)."""
    inbox = SmtpInbox()
    port = free_port()
    options: dict[str, Any] = {"enable_SMTPUTF8": smtputf8}
    if starttls is not None:
        options["tls_context"] = starttls
    if login is not None:

        def authenticator(
            server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
        ) -> AuthResult:
            given = isinstance(auth_data, LoginPassword) and (
                auth_data.login.decode(),
                auth_data.password.decode(),
            )
            return AuthResult(success=given == login, handled=False)

        options.update(
            authenticator=authenticator,
            auth_required=True,
            auth_require_tls=starttls is not None,
        )
    controller = Controller(
        inbox, hostname="127.0.0.1", port=port, ssl_context=implicit_tls, **options
    )
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@dataclass
class TwilioRecord:
    """Requests the Twilio stand-in received; ``answers`` scripts replies by recipient."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    # The account resource (GET /2010-04-01/Accounts/{sid}.json) and who read it.
    account: dict[str, Any] = field(
        default_factory=lambda: {"friendly_name": "Acme Test", "status": "active", "type": "Full"}
    )
    account_reads: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def messages(self) -> list[dict[str, str]]:
        with self.lock:
            return [r["form"] for r in self.requests]


@contextmanager
def twilio_server(
    account_sid: str = "AC123", auth_token: str = "secret"
) -> Iterator[tuple[TwilioRecord, str]]:
    record = TwilioRecord()
    expected_auth = "Basic " + base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like the real API

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            form = dict(parse_qsl(self.rfile.read(length).decode()))
            with record.lock:
                record.requests.append(
                    {
                        "path": self.path,
                        "auth": self.headers.get("Authorization"),
                        "form": form,
                        "content_type": self.headers.get("Content-Type"),
                    }
                )
                count = len(record.requests)
            if self.headers.get("Authorization") != expected_auth:
                self._answer(401, {"code": 20003, "message": "Authenticate", "status": 401})
                return
            if self.path != f"/2010-04-01/Accounts/{account_sid}/Messages.json":
                self._answer(404, {"code": 20404, "message": "Not found", "status": 404})
                return
            scripted = record.answers.get(form.get("To", ""))
            if scripted is not None:
                self._answer(*scripted)
                return
            self._answer(201, {"sid": f"SM{count:032d}", "status": "queued", "to": form["To"]})

        def do_GET(self) -> None:
            with record.lock:
                record.account_reads.append(
                    {"path": self.path, "auth": self.headers.get("Authorization")}
                )
            if self.headers.get("Authorization") != expected_auth:
                self._answer(401, {"code": 20003, "message": "Authenticate", "status": 401})
                return
            if self.path != f"/2010-04-01/Accounts/{account_sid}.json":
                self._answer(404, {"code": 20404, "message": "Not found", "status": 404})
                return
            self._answer(200, {"sid": account_sid, **record.account})

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    class Server(ThreadingHTTPServer):
        request_queue_size = 128  # the default of 5 resets concurrent connections
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield record, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
