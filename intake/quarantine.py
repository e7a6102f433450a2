"""Quarantined mail: look at it and, after a fix, process it again."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from intake import store
from intake.config import MailboxConfig, Settings
from intake.domain import RawMessage, SourceRef
from intake.errors import NotFound
from intake.models import Message, Quarantine
from intake.parsing import quick_message_id
from intake.pipeline import Outcome, Ports, process_raw


def pending(session: Session) -> list[Quarantine]:
    return list(session.execute(select(Quarantine).where(Quarantine.resolved_at.is_(None)).order_by(Quarantine.id)).scalars())


def get(session: Session, quarantine_id: int) -> Quarantine:
    row = session.get(Quarantine, quarantine_id)
    if row is None:
        raise NotFound(f"no quarantined message {quarantine_id}")
    return row


def raw_bytes(row: Quarantine, ports: Ports) -> bytes:
    opener = getattr(ports.cipher, "open", None)
    return opener(row.data, row.encrypted) if opener else row.data


def retry(session: Session, settings: Settings, ports: Ports, row: Quarantine) -> Outcome:
    """Process a quarantined message again, as if just fetched. Raises what the pipeline raises."""
    data = raw_bytes(row, ports)
    raw = RawMessage(SourceRef(row.mailbox, row.uidvalidity, row.uid), data)
    mailbox = _mailbox(settings, row.mailbox)
    # An earlier 'unparseable' record of these bytes is replaced by the new result.
    session.execute(delete(Message).where(Message.content_hash == raw.content_hash))
    key = store.message_id_key(quick_message_id(data), raw.content_hash)
    with session.begin_nested():
        outcome = process_raw(session, settings, mailbox, raw, ports, None, key=key)
    row.attempts += 1
    if outcome.kind != "unparseable":
        row.resolved_at = ports.clock.now()
    return outcome


def _mailbox(settings: Settings, name: str) -> MailboxConfig:
    for mailbox in settings.mailboxes:
        if mailbox.name == name:
            return mailbox
    # The mailbox was removed from the config since: process with no default group, no ack.
    return MailboxConfig(name=name, host="", port=0, security="tls", ca_file="", username="", password="",
                         folder="INBOX", group="", move_to="", ack=False, timeout=60, enabled=False)
