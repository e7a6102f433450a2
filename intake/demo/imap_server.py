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
from typing import Mapping

from proxyprotocol.reader import ProxyProtocolReader
from pymap.backend.dict import Config, Identity, Login
from pymap.concurrent import Subsystem
from pymap.imap import IMAPServer
from pymap.parsing.message import AppendMessage
from pymap.user import Passwords, UserMetadata

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
    )


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
        callback = ProxyProtocolReader(config.proxy_protocol).get_callback(IMAPServer(login, config))
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
