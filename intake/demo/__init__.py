"""The built-in demo: a local IMAP server and SMTP sink, seeded with sample mail.

`intake run` calls `start_demo(settings)` when ``[demo] enabled = true`` and `stop()` at
exit. The IMAP server (pymap, in memory) gets one account per ``[[mailboxes]]`` entry on
127.0.0.1/localhost with security "none" (their username and password); the SMTP sink
listens on ``[smtp] host/port`` and writes what it receives to ``demo.smtp_sink_dir``.
Both run on one private event loop in a daemon thread. Nothing here starts unless the
caller asks, and `start_demo` refuses to run when ``demo.enabled`` is false.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path

from intake.config import MailboxConfig, Settings
from intake.demo.imap_server import DemoImapServer, is_address_in_use
from intake.demo.loop import BackgroundLoop
from intake.demo.samples import Sample, sample_messages, samples
from intake.demo.smtp_sink import DemoSmtpSink
from intake.errors import ConfigError, DemoPortInUse

log = logging.getLogger(__name__)

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

_HINT = ("Is another `intake run` (or `make run`) still running? Stop it, or give the demo "
         "other ports in intake.toml ({keys}).")


@dataclass
class DemoServers:
    """Handle on the running demo servers; `stop()` closes both and frees their ports."""

    imap_port: int
    smtp_port: int
    sink_dir: Path
    accounts: tuple[str, ...]
    seeded: int
    _loop: BackgroundLoop = field(repr=False)
    _imap: DemoImapServer = field(repr=False)
    _smtp: DemoSmtpSink = field(repr=False)
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        """Stop listening, end open connections, stop the thread. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self._loop.call(_close_all(self._imap, self._smtp))
        finally:
            self._loop.close()
        log.info("demo servers stopped")


async def _close_all(*servers: DemoImapServer | DemoSmtpSink | None) -> None:
    for server in servers:
        if server is not None:
            await server.close()


def demo_mailboxes(settings: Settings) -> tuple[MailboxConfig, ...]:
    """The mailboxes the demo IMAP server serves: local, plain text, password login."""
    return tuple(m for m in settings.mailboxes
                 if m.host.lower() in LOCAL_HOSTS and m.security == "none" and m.auth == "password")


def _imap_address(settings: Settings, mailboxes: tuple[MailboxConfig, ...]) -> tuple[str, int]:
    if not mailboxes:
        raise ConfigError("demo.enabled is true but no [[mailboxes]] entry has host 127.0.0.1 or localhost "
                          "with security = \"none\" for the demo IMAP server to serve", file=str(settings.path), key="mailboxes")
    ports = {m.port for m in mailboxes}
    if len(ports) > 1:
        raise ConfigError(f"the demo IMAP server listens on one port, but the local mailboxes use {sorted(ports)}",
                          file=str(settings.path), key="mailboxes.port")
    return _bind_host(mailboxes[0].host), ports.pop()


def _bind_host(host: str) -> str:
    # "localhost" may resolve to ::1 first while clients try 127.0.0.1: listen on what the
    # shipped config and its clients use.
    return "127.0.0.1" if host.lower() == "localhost" else host


def start_demo(settings: Settings, *, seed: bool | None = None, now: dt.datetime | None = None) -> DemoServers:
    """Start the demo IMAP server and SMTP sink; seed sample mail when `seed` (default demo.seed).

    `now` dates the sample mail (default: the current time). Raises ConfigError when the
    demo is disabled or the config has nothing for it to serve, DemoPortInUse when a port
    is taken.
    """
    if not settings["demo.enabled"]:
        raise ConfigError("the demo is disabled; set [demo] enabled = true to start it", file=str(settings.path), key="demo.enabled")
    mailboxes = demo_mailboxes(settings)
    imap_host, imap_port = _imap_address(settings, mailboxes)
    smtp_host, smtp_port = settings["smtp.host"], settings["smtp.port"]
    if smtp_host.lower() not in LOCAL_HOSTS:
        raise ConfigError("with the demo enabled, smtp.host must be 127.0.0.1 or localhost (the demo sink)",
                          file=str(settings.path), key="smtp.host")
    accounts = {m.username: m.password for m in mailboxes}
    sink_dir = Path(settings["demo.smtp_sink_dir"])  # relative to the working directory, as documented
    loop = BackgroundLoop()
    imap = smtp = None
    try:
        imap = _listen(loop, "IMAP server", imap_host, imap_port, "the port of the local [[mailboxes]]",
                       DemoImapServer.start(imap_host, imap_port, accounts))
        smtp = _listen(loop, "SMTP sink", _bind_host(smtp_host), smtp_port, "[smtp] port",
                       DemoSmtpSink.start(_bind_host(smtp_host), smtp_port, sink_dir))
        seeded = 0
        if settings["demo.seed"] if seed is None else seed:
            seeded = _seed(loop, imap, samples(now or dt.datetime.now(dt.timezone.utc)), set(accounts))
    except BaseException:
        loop.call(_close_all(imap, smtp))
        loop.close()
        raise
    log.info("demo IMAP server on %s:%d (%d mailboxes, %d sample messages), SMTP sink on %s:%d -> %s",
             imap_host, imap.port, len(accounts), seeded, smtp_host, smtp.port, sink_dir)
    return DemoServers(imap.port, smtp.port, sink_dir, tuple(accounts), seeded, loop, imap, smtp)


def _listen(loop: BackgroundLoop, service: str, host: str, port: int, keys: str, starting):  # type: ignore[no-untyped-def]
    try:
        return loop.call(starting)
    except OSError as exc:
        if is_address_in_use(exc):
            raise DemoPortInUse(service, host, port, _HINT.format(keys=keys)) from None
        raise


def _seed(loop: BackgroundLoop, imap: DemoImapServer, items: list[Sample], accounts: set[str]) -> int:
    count = 0
    for item in items:
        if item.mailbox not in accounts:
            # A trimmed config (fewer mailboxes than shipped): its samples have nowhere to go.
            log.debug("demo sample for %s skipped: no such demo mailbox", item.mailbox)
            continue
        loop.call(imap.append(item.mailbox, item.raw, item.received))
        count += 1
    return count


__all__ = ["DemoServers", "DemoPortInUse", "demo_mailboxes", "sample_messages", "samples", "start_demo"]
