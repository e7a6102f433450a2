"""The database schema (SQLAlchemy 2 ORM), designed for every issue at once.

Tables and why they exist:
  mailbox_state     per-mailbox checkpoint (UIDVALIDITY + last UID), health, and a lease
                    so several workers never poll one mailbox at once
  messages          one row per distinct inbound message (dedupe: message_id_key + hash)
  message_sources   every (mailbox, uidvalidity, uid) a message was seen at; the same
                    message delivered to two group mailboxes is one message, two sources
  raw_messages      the raw bytes, kept apart so retention can purge them alone;
                    `encrypted` says whether `data` is a Fernet token
  attachments       attachment bytes (same retention and encryption as raw)
  applications      one per (applicant email, group); the coordinators' unit of work
  application_messages  which messages belong to which applications
  outbox            every message we send: composed in the ingest transaction, sent by
                    the delivery job (transactional outbox)
  outbox_applications   which applications an outgoing message concerns
  quarantine        raw bytes of mail we could not process, with the reason
  group_dates       upcoming dates per group: seeded from groups.toml, edited in the app
  users, user_groups    coordinators and admins, and the groups each may see
  audit_events      who did what to which record, when (never message content)
  tombstones        hashes of erased messages, so a re-poll does not bring them back
  id_floors         the largest id ever given out, per table, where the table itself
                    cannot tell (erased applications: see store.next_application_id)
  job_runs          last run of scheduled jobs (digest, retention)
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dt.datetime: DateTime(timezone=True)}


class MailboxState(Base):
    __tablename__ = "mailbox_state"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    folder: Mapped[str] = mapped_column(String(300), default="INBOX")
    uidvalidity: Mapped[int | None] = mapped_column(Integer)
    last_uid: Mapped[int] = mapped_column(Integer, default=0)
    first_connected_at: Mapped[dt.datetime | None]
    last_poll_at: Mapped[dt.datetime | None]
    last_success_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None]
    backlog: Mapped[int] = mapped_column(Integer, default=0)
    polls_total: Mapped[int] = mapped_column(Integer, default=0)
    poll_errors_total: Mapped[int] = mapped_column(Integer, default=0)
    last_poll_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[dt.datetime | None]


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_message_id_key", "message_id_key"),
        Index("ix_messages_received_at", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str] = mapped_column(Text, default="")
    # Message-ID lower-cased and trimmed (or "hash:<sha256>" when absent): the dedupe key.
    message_id_key: Mapped[str] = mapped_column(String(500))
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    mailbox: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text, default="")
    groups: Mapped[list[str]] = mapped_column(JSON, default=list)
    route_reason: Mapped[str] = mapped_column(Text, default="")
    from_address: Mapped[str] = mapped_column(String(320), default="")
    from_name: Mapped[str] = mapped_column(String(300), default="")
    reply_to: Mapped[str] = mapped_column(String(320), default="")
    to_addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    subject: Mapped[str] = mapped_column(Text, default="")
    in_reply_to: Mapped[str] = mapped_column(Text, default="")
    references: Mapped[list[str]] = mapped_column(JSON, default=list)
    received_at: Mapped[dt.datetime]
    fetched_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    size: Mapped[int] = mapped_column(Integer, default=0)
    oversize: Mapped[bool] = mapped_column(Boolean, default=False)
    body_text: Mapped[str] = mapped_column(Text, default="")
    body_html: Mapped[str] = mapped_column(Text, default="")
    acknowledge: Mapped[bool] = mapped_column(Boolean, default=True)
    ack_skip_reason: Mapped[str] = mapped_column(Text, default="")

    sources: Mapped[list[MessageSource]] = relationship(back_populates="message", cascade="all, delete-orphan")
    raw: Mapped[RawMessageRow | None] = relationship(back_populates="message", cascade="all, delete-orphan", uselist=False)
    attachments: Mapped[list[AttachmentRow]] = relationship(back_populates="message", cascade="all, delete-orphan")
    applications: Mapped[list[Application]] = relationship(secondary="application_messages", back_populates="messages")


class MessageSource(Base):
    __tablename__ = "message_sources"
    __table_args__ = (UniqueConstraint("mailbox", "uidvalidity", "uid", name="uq_message_sources_ref"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    mailbox: Mapped[str] = mapped_column(String(100))
    uidvalidity: Mapped[int] = mapped_column(Integer)
    uid: Mapped[int] = mapped_column(Integer)
    seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    message: Mapped[Message] = relationship(back_populates="sources")


class RawMessageRow(Base):
    __tablename__ = "raw_messages"

    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    encrypted: Mapped[bool] = mapped_column(Boolean, default=False)
    stored_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    message: Mapped[Message] = relationship(back_populates="raw")


class AttachmentRow(Base):
    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(300), default="")
    content_type: Mapped[str] = mapped_column(String(200), default="application/octet-stream")
    size: Mapped[int] = mapped_column(Integer, default=0)
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    encrypted: Mapped[bool] = mapped_column(Boolean, default=False)

    message: Mapped[Message] = relationship(back_populates="attachments")


class ApplicationMessage(Base):
    __tablename__ = "application_messages"

    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"), primary_key=True)
    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True, index=True)

    # Lets a link be added before either row is written (the flush orders the INSERTs);
    # the collections Message.applications / Application.messages read the same table.
    application: Mapped["Application"] = relationship(overlaps="applications,messages")
    message: Mapped["Message"] = relationship(overlaps="applications,messages")


class Application(Base):
    __tablename__ = "applications"
    __table_args__ = (
        # One application per person per group. Anonymised rows have email NULL.
        UniqueConstraint("email", "group_code", name="uq_applications_email_group"),
        Index("ix_applications_group_status", "group_code", "status"),
        Index("ix_applications_group_received", "group_code", "received_at"),
        # "Needs attention" on the dashboard and in the digest: a handful of rows among many.
        Index("ix_applications_attention", "needs_attention", "group_code"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reference: Mapped[str | None] = mapped_column(String(20), unique=True)
    group_code: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="new")
    name: Mapped[str] = mapped_column(String(300), default="")
    email: Mapped[str | None] = mapped_column(String(320))
    job_title: Mapped[str] = mapped_column(String(300), default="")
    organisation: Mapped[str] = mapped_column(String(300), default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    route_reason: Mapped[str] = mapped_column(Text, default="")
    received_at: Mapped[dt.datetime]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    status_changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    needs_attention: Mapped[bool] = mapped_column(Boolean, default=False)
    anonymised_at: Mapped[dt.datetime | None]
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("applications.id"))

    messages: Mapped[list[Message]] = relationship(secondary="application_messages", back_populates="applications", order_by="Message.received_at")


class Outbox(Base):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(30), default="ack")  # ack | withdrawal | reply | digest
    to_address: Mapped[str] = mapped_column(String(320))
    from_address: Mapped[str] = mapped_column(String(400), default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[str] = mapped_column(String(500), unique=True)
    in_reply_to: Mapped[str] = mapped_column(Text, default="")
    group_codes: Mapped[list[str]] = mapped_column(JSON, default=list)
    body: Mapped[bytes] = mapped_column(LargeBinary)  # the complete RFC 5322 message
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending|sending|sent|failed|held|undeliverable
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None]
    last_error: Mapped[str] = mapped_column(Text, default="")
    smtp_response: Mapped[str] = mapped_column(Text, default="")
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    claimed_until: Mapped[dt.datetime | None]
    source_message_pk: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    created_by: Mapped[str] = mapped_column(String(320), default="")

    applications: Mapped[list[Application]] = relationship(secondary="outbox_applications")
    # Set when the message is stored in the same flush (its id is not known yet). No backref:
    # deleting a message leaves this to the database (ON DELETE SET NULL).
    source_message: Mapped[Message | None] = relationship(foreign_keys=[source_message_pk])


# The look-ups the pipeline makes per poll batch or per message, which scanned the whole
# outbox without these: an address's recent replies (the one-per-window rule), the replies
# of the last hour (the hourly cap), and a reply by the Message-ID a follow-up or bounce
# quotes (compared case-blind).
Index("ix_outbox_recipient_created", func.lower(Outbox.to_address), Outbox.created_at)
Index("ix_outbox_kind_created", Outbox.kind, Outbox.created_at, Outbox.status)
Index("ix_outbox_message_id_lower", func.lower(Outbox.message_id))


class OutboxApplication(Base):
    __tablename__ = "outbox_applications"

    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox.id", ondelete="CASCADE"), primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"), primary_key=True, index=True)


class Quarantine(Base):
    __tablename__ = "quarantine"
    __table_args__ = (UniqueConstraint("content_hash", name="uq_quarantine_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(100))
    uidvalidity: Mapped[int] = mapped_column(Integer, default=0)
    uid: Mapped[int] = mapped_column(Integer, default=0)
    content_hash: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    encrypted: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[dt.datetime | None]


class GroupDateRow(Base):
    __tablename__ = "group_dates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_code: Mapped[str] = mapped_column(String(20), index=True)
    start: Mapped[dt.datetime]
    end: Mapped[dt.datetime]
    where: Mapped[str] = mapped_column(Text, default="")
    uid: Mapped[str] = mapped_column(String(200), unique=True)  # stable iCalendar UID


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(300), default="")
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(20))  # coordinator | admin
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[dt.datetime | None]

    groups: Mapped[list[UserGroup]] = relationship(cascade="all, delete-orphan")

    @property
    def group_codes(self) -> list[str]:
        return sorted(g.group_code for g in self.groups)


class UserGroup(Base):
    __tablename__ = "user_groups"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    group_code: Mapped[str] = mapped_column(String(20), primary_key=True)


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_at", "at"), Index("ix_audit_target", "target_type", "target_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(320))  # user email, "system", "cli"
    action: Mapped[str] = mapped_column(String(60))
    target_type: Mapped[str] = mapped_column(String(40), default="")
    target_id: Mapped[str] = mapped_column(String(60), default="")
    group_code: Mapped[str] = mapped_column(String(20), default="")
    ip: Mapped[str] = mapped_column(String(60), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Tombstone(Base):
    __tablename__ = "tombstones"

    content_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    message_id_hash: Mapped[str] = mapped_column(String(64), default="", index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class IdFloor(Base):
    """Ids at or below `value` are never handed out again for `name` (a table)."""

    __tablename__ = "id_floors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


class JobRun(Base):
    __tablename__ = "job_runs"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    last_run_at: Mapped[dt.datetime | None]
    last_result: Mapped[str] = mapped_column(Text, default="")
