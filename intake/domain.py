"""Frozen value objects that flow through the pipeline.

Third-party objects (imapclient responses, mailparser objects, ORM rows) stop at the
adapter that made them; everything past an adapter speaks these types.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
from dataclasses import dataclass, field
from functools import cached_property


class Kind(str, enum.Enum):
    """What an inbound message is. The classifier decides exactly one."""

    INTEREST = "interest"
    FOLLOW_UP = "follow_up"
    WITHDRAWAL = "withdrawal"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"
    LIST = "list"
    OWN_MAIL = "own_mail"
    SPAM = "spam"
    UNPARSEABLE = "unparseable"


class Status(str, enum.Enum):
    """Where an application stands in the coordinators' workflow."""

    NEW = "new"
    CONTACTED = "contacted"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    WITHDRAWN = "withdrawn"
    UNDELIVERABLE = "undeliverable"


CLOSED_STATUSES = frozenset({Status.ACCEPTED, Status.DECLINED, Status.WITHDRAWN, Status.UNDELIVERABLE})

TRIAGE = "TRIAGE"


@dataclass(frozen=True)
class SourceRef:
    """Where a message sits on an IMAP server: stable while UIDVALIDITY holds."""

    mailbox: str
    uidvalidity: int
    uid: int


@dataclass(frozen=True)
class RawMessage:
    """The bytes of one message as fetched, and where they came from."""

    ref: SourceRef
    data: bytes
    internal_date: dt.datetime | None = None

    @cached_property  # read at several steps of the pipeline: hash a 10 MB message once
    def content_hash(self) -> str:
        return content_hash(self.data)


def content_hash(data: bytes) -> str:
    """SHA-256 of the raw bytes: the dedupe key when Message-ID is missing or reused."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Address:
    """One mailbox address with its display name (both already cleaned)."""

    email: str
    name: str = ""

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.name else self.email


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class InboundMessage:
    """A parsed message: every header value we keep has had control characters removed."""

    message_id: str
    subject: str
    from_: Address | None
    reply_to: Address | None
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    delivered_to: tuple[str, ...]
    date: dt.datetime | None
    in_reply_to: str
    references: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    text: str
    html: str
    attachments: tuple[Attachment, ...] = ()
    content_type: str = "text/plain"
    size: int = 0
    oversize: bool = False
    defects: tuple[str, ...] = ()

    def header(self, name: str) -> str:
        """The first value of a header (case-insensitive), or ''."""
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return ""

    def header_all(self, name: str) -> tuple[str, ...]:
        lname = name.lower()
        return tuple(value for key, value in self.headers if key.lower() == lname)

    def has_header(self, name: str) -> bool:
        lname = name.lower()
        return any(key.lower() == lname for key, _ in self.headers)

    @property
    def recipients(self) -> tuple[str, ...]:
        """Every address this message was sent to, as lower-case strings, in order."""
        everyone = [a.email for a in self.to + self.cc] + list(self.delivered_to)
        return tuple(dict.fromkeys(e for e in everyone if e))

    @property
    def body(self) -> str:
        """The text we read for meaning: plain text, else the HTML's text."""
        return self.text or self.html


@dataclass(frozen=True)
class Verdict:
    """The classifier's decision and why it was made."""

    kind: Kind
    reason: str
    rule: str = ""
    related_message_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Route:
    """Which queues a message belongs in. `groups` holds codes, possibly just TRIAGE."""

    groups: tuple[str, ...]
    reason: str
    evidence: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Applicant:
    """The person an application is about (the forwarded person, for a forward)."""

    email: str
    name: str = ""
    job_title: str = ""
    organisation: str = ""
