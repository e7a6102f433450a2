"""A real SMTP server for tests (aiosmtpd on a loopback port) that records what it receives.

It can be told to answer with an error for the next N messages (`fail_next(451, n)`), and
stopped and started again on the same port to simulate an outage.
"""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller

logging.getLogger("mail.log").setLevel(logging.WARNING)


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class _Handler:
    messages: list[Received] = field(default_factory=list)
    failures: list[tuple[int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        with self.lock:
            if self.failures:
                code, text = self.failures.pop(0)
                return f"{code} {text}"
            self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content or envelope.content)))
        return "250 2.0.0 OK queued"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpServer:
    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.handler = _Handler()
        self._controller: Controller | None = None

    @property
    def messages(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.messages)

    def start(self) -> "SmtpServer":
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def fail_next(self, code: int, count: int = 1, text: str = "try again later") -> None:
        with self.handler.lock:
            self.handler.failures.extend([(code, text)] * count)

    def clear(self) -> None:
        with self.handler.lock:
            self.handler.messages.clear()
            self.handler.failures.clear()
