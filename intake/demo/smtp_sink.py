"""The demo SMTP sink: accepts every message and writes it to a folder as an .eml file.

So a newcomer can open what intake would have sent (acknowledgements, digests) without a
real mail server and without anything leaving the machine. aiosmtpd speaks SMTP; this
module only decides where the bytes go and logs one line per message.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP

log = logging.getLogger(__name__)

HOSTNAME = "intake-demo.localhost"  # fixed, so the banner needs no DNS lookup


class EmlWriter:
    """aiosmtpd handler: each accepted message becomes <directory>/<time>-<id>.eml."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        data = bytes(envelope.original_content or envelope.content)
        path = self.directory / eml_name(dt.datetime.now(dt.timezone.utc))
        # Write beside, then rename: a reader polling the folder never sees half a file.
        partial = path.with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(path)
        log.info("demo sink received: To=%s, Subject=%s", ", ".join(envelope.rcpt_tos), subject_of(data))
        return "250 2.0.0 OK: written to the demo sink"


def eml_name(now: dt.datetime) -> str:
    """Sortable by arrival, unique without coordination."""
    return f"{now:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.eml"


def subject_of(data: bytes) -> str:
    """The decoded Subject header (RFC 2047 words resolved), or '' if there is none."""
    headers = BytesHeaderParser(policy=default_policy).parsebytes(data)
    try:
        return str(headers.get("Subject", ""))
    except (ValueError, TypeError):  # a malformed encoded word: show it raw rather than fail
        return str(headers.get_all("Subject", [""])[0])


class DemoSmtpSink:
    """A listening sink. Create with `await DemoSmtpSink.start(...)` on the demo loop."""

    def __init__(self, server: asyncio.AbstractServer, directory: Path) -> None:
        self._server = server
        self.directory = directory
        self.port: int = server.sockets[0].getsockname()[1]

    @classmethod
    async def start(cls, host: str, port: int, directory: Path) -> "DemoSmtpSink":
        """Listen on host:port (0: any free port). Raises OSError when the port is taken."""
        # aiosmtpd logs every connection and command at INFO; one line per message from us is enough.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        directory.mkdir(parents=True, exist_ok=True)
        handler = EmlWriter(directory)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(handler, hostname=HOSTNAME, loop=loop), host=host, port=port)
        return cls(server, directory)

    async def close(self) -> None:
        self._server.close()
        await self._server.wait_closed()
