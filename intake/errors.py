"""The one tree of intake's own error types.

    IntakeError
    ├── ConfigError            a settings file or variable is wrong (names file and key)
    ├── MailboxError           one mailbox cannot be used right now
    │   ├── MailboxAuthError       the server refused our credentials
    │   ├── MailboxUnavailable     connect, TLS or protocol failure; retry later
    │   └── FolderMissing          the configured folder does not exist
    ├── DeliveryError          sending one outbox row failed
    │   ├── TemporaryDeliveryError 4xx or connection trouble: retry with backoff
    │   └── PermanentDeliveryError 5xx: record and stop
    ├── StoreError             the database refused (locked, full, constraint)
    ├── DemoPortInUse          the built-in demo cannot listen: its port is taken
    └── NotFound               a thing asked for by id or address does not exist

Only the CLI turns these into exit codes; the worker turns MailboxError into a recorded,
retried failure of one mailbox and keeps the others going.
"""

from __future__ import annotations


class IntakeError(Exception):
    """Base of every error intake raises on purpose."""


class ConfigError(IntakeError):
    """A configuration problem, with the file and key it concerns."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None):
        self.file = file
        self.key = key
        where = ", ".join(p for p in (f"file {file}" if file else "", f"key {key}" if key else "") if p)
        super().__init__(f"{where}: {message}" if where else message)


class MailboxError(IntakeError):
    """One mailbox cannot be polled right now."""

    def __init__(self, mailbox: str, reason: str):
        self.mailbox = mailbox
        self.reason = reason
        super().__init__(f"mailbox {mailbox}: {reason}")


class MailboxAuthError(MailboxError):
    """The IMAP server refused our credentials."""


class MailboxUnavailable(MailboxError):
    """Connection, TLS or protocol failure; worth retrying later."""


class FolderMissing(MailboxError):
    """The configured folder does not exist on the server."""


class DeliveryError(IntakeError):
    """Sending one outgoing message failed."""

    def __init__(self, reason: str, *, code: int | None = None):
        self.reason = reason
        self.code = code
        super().__init__(reason)


class TemporaryDeliveryError(DeliveryError):
    """A 4xx reply or a connection problem: retry with backoff."""


class PermanentDeliveryError(DeliveryError):
    """A 5xx reply: the message will never be accepted as it is."""


class StoreError(IntakeError):
    """The database refused an operation."""


class DemoPortInUse(IntakeError):
    """The built-in demo server cannot listen on its port (another demo still running?)."""

    def __init__(self, service: str, host: str, port: int, hint: str):
        self.service = service
        self.host = host
        self.port = port
        super().__init__(f"demo {service} cannot listen on {host}:{port}: the port is already in use. {hint}")


class NotFound(IntakeError):
    """A requested record does not exist."""
