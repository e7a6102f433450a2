"""A real SMTP server for tests (aiosmtpd on a loopback port) that records what it receives.

    server = SmtpServer().start()                       # plain SMTP
    SmtpServer(security="starttls", auth=("u", "pw"))   # STARTTLS offered, AUTH required
    SmtpServer(security="tls")                          # implicit TLS; CA in server.ca_file

It records every accepted envelope and raw message (`.messages`), and every session's
authenticated login (`.logins`). It can answer with an error for the next N messages
(`fail_next(451, n)`; a 421 also closes the connection, as RFC 5321 says a server does),
drop the connection at the end of DATA without answering (`drop_next(n)`), answer slowly
(`slow_down(seconds)`), and be stopped
and started again on the same port to simulate an outage.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
import warnings
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.servers.certs import certificates

# aiosmtpd logs every command at INFO; the tests' output should show only real trouble.
logging.getLogger("mail.log").setLevel(logging.ERROR)


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    login: str = ""


@dataclass
class _Handler:
    messages: list[Received] = field(default_factory=list)
    failures: list[tuple[int, str]] = field(default_factory=list)
    drops: int = 0
    logins: list[str] = field(default_factory=list)
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            if self.drops:
                self.drops -= 1
                server.transport.abort()  # gone without a word: the client cannot know
                return "250 never seen"
            if self.failures:
                code, text = self.failures.pop(0)
                if code == 421:  # "closing transmission channel": close after the reply
                    asyncio.get_running_loop().call_soon(server.transport.close)
                return f"{code} {text}"
            login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else ""
            self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                          bytes(envelope.original_content or envelope.content), login))
        return "250 2.0.0 OK queued"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpServer:
    def __init__(self, port: int | None = None, *, security: str = "none", auth: tuple[str, str] | None = None):
        self.port = port or free_port()
        self.security = security
        self.auth = auth
        self.handler = _Handler()
        self._controller: Controller | None = None
        self.ca_file = certificates().ca_file if security != "none" else ""

    @property
    def messages(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.messages)

    @property
    def logins(self) -> list[str]:
        with self.handler.lock:
            return list(self.handler.logins)

    def _authenticate(self, server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
        ok = (isinstance(auth_data, LoginPassword) and self.auth is not None
              and (auth_data.login.decode(), auth_data.password.decode()) == self.auth)
        if ok:
            with self.handler.lock:
                self.handler.logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    def start(self) -> "SmtpServer":
        kwargs: dict = {}
        if self.security != "none":
            certs = certificates()
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(certs.cert_file, certs.key_file)
            kwargs = {"ssl_context": context} if self.security == "tls" else {"tls_context": context, "require_starttls": True}
        if self.auth is not None:
            # Over implicit TLS aiosmtpd cannot tell the channel is encrypted, so it may not
            # insist on TLS for AUTH (and warns that it does not); STARTTLS mode does insist.
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS", UserWarning)
            kwargs.update(authenticator=self._authenticate, auth_required=True,
                          auth_require_tls=self.security == "starttls")
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def fail_next(self, code: int, count: int = 1, text: str = "try again later") -> None:
        """Answer the end of DATA of the next `count` messages with `code text`."""
        with self.handler.lock:
            self.handler.failures.extend([(code, text)] * count)

    def slow_down(self, seconds: float) -> None:
        """Take this long to answer the end of DATA of every message from now on."""
        with self.handler.lock:
            self.handler.delay = seconds

    def drop_next(self, count: int = 1) -> None:
        """Cut the connection at the end of DATA of the next `count` messages, unanswered."""
        with self.handler.lock:
            self.handler.drops += count

    def clear(self) -> None:
        with self.handler.lock:
            self.handler.messages.clear()
            self.handler.failures.clear()
            self.handler.logins.clear()
            self.handler.drops = 0
            self.handler.delay = 0.0

