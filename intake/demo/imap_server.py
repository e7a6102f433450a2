"""The demo IMAP server: pymap's in-memory backend, one account per demo mailbox.

pymap's dict backend knows a single "demo user" out of the box; its Login keeps users in
a plain dict, so we add one UserMetadata per configured mailbox (username/password from
intake.toml) and each gets its own in-memory mailbox set on first login. pymap provides
LOGIN, SELECT/EXAMINE, UID SEARCH/FETCH, APPEND, CREATE, MOVE, COPY, EXPUNGE and IDLE.
Everything here is a coroutine: run it on the demo's BackgroundLoop. Nothing persists: a
restart of the demo starts from the seeded sample mail again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
from argparse import Namespace
from typing import Any, Awaitable, Callable, Mapping

from proxyprotocol.reader import ProxyProtocolReader
from pymap.backend.dict import Config, Identity, Login
from pymap.concurrent import Subsystem
from pymap.imap import IMAPServer
from pymap.parsing.message import AppendMessage
from pymap.user import Passwords, UserMetadata
from pysasl.hashing import BuiltinHash

GREETING = b"intake demo IMAP server ready"


class _DemoConfig(Config):
    """pymap's dict config without STARTTLS and without a DNS lookup for the greeting."""

    @property
    def greeting(self) -> bytes:
        return GREETING


def _config(host: str, port: int) -> _DemoConfig:
    # pymap's Config reads these attributes off its argparse namespace.
    args = Namespace(debug=False, passlib_cfg=None, proxy_protocol=None, inherited_sockets=None)
    return _DemoConfig(
        args,
        host=host,
        port=port,
        demo_data=False,
        demo_user="",
        demo_password="",
        tls_enabled=False,  # plain LOGIN on loopback; the demo never carries real data
        invalid_user_sleep=0.0,
        reject_dnsbl=False,
        # Hash and check passwords inline: a per-start thread pool would outlive stop().
        cpu_subsystem=Subsystem.for_asyncio(),
        # pymap's default 500,000 PBKDF2 rounds cost ~0.25 s per LOGIN on the one loop thread,
        # i.e. every poll of every mailbox; the demo's passwords are public ("demo") anyway.
        hash_context=BuiltinHash(rounds=1_000),
    )


class WholeResponseWriter:
    """A StreamWriter that hands the socket each response whole, at drain().

    pymap writes one response in pieces ("* 4 FETCH ", "(FLAGS ())", "\\r\\n") and the
    asyncio transport sends each piece at once. imapclient reads IDLE updates from a
    non-blocking socket and aborts on a half line ("unterminated line"), which dropped the
    worker's IDLE connections. pymap drains after every response, so buffering until then
    keeps responses intact without delaying any.
    """

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._pending = bytearray()

    def write(self, data: bytes) -> None:
        self._pending += data

    async def drain(self) -> None:
        if self._pending:
            self._writer.write(bytes(self._pending))
            self._pending.clear()
        await self._writer.drain()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)  # close, start_tls, get_extra_info, transport, ...


def _whole_responses(imap: IMAPServer) -> Callable[..., Awaitable[None]]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sock_info: Any) -> None:
        await imap(reader, WholeResponseWriter(writer), sock_info)  # type: ignore[arg-type]

    return handle


class DemoImapServer:
    """A listening pymap server. Create with `await DemoImapServer.start(...)`."""

    def __init__(self, server: asyncio.AbstractServer, login: Login, config: _DemoConfig) -> None:
        self._server = server
        self._login = login
        self._config = config
        self.port: int = server.sockets[0].getsockname()[1]

    @classmethod
    async def start(cls, host: str, port: int, accounts: Mapping[str, str]) -> "DemoImapServer":
        """Listen on host:port (0: any free port) with one account per username->password.

        Raises OSError (errno EADDRINUSE) when the port is taken.
        """
        config = _config(host, port)
        login = Login(config)
        passwords = Passwords(config)
        for username, password in accounts.items():
            hashed = await passwords.hash_password(password)
            await Identity(username, login, None, frozenset()).set(UserMetadata(config, username, password=hashed))
        callback = ProxyProtocolReader(config.proxy_protocol).get_callback(_whole_responses(IMAPServer(login, config)))
        server = await asyncio.start_server(callback, host=host, port=port, reuse_address=True)
        return cls(server, login, config)

    async def append(self, username: str, message: bytes, when: dt.datetime, folder: str = "INBOX") -> int:
        """Put a message straight into a user's folder (no IMAP round trip); return its UID."""
        identity = Identity(username, self._login, None, frozenset())
        async with identity.new_session() as session:
            mailbox = await session.mailbox_set.get_mailbox(folder)
            stored = await mailbox.append(AppendMessage(message, when, frozenset()), recent=True)
        return stored.uid

    async def close(self) -> None:
        """Stop listening; open connections are ended by the loop's shutdown."""
        self._server.close()
        await self._server.wait_closed()


def is_address_in_use(exc: OSError) -> bool:
    return exc.errno == errno.EADDRINUSE
