"""The daily digest: each group's coordinators hear how many new applications and follow-ups
arrived since the last digest, and how many applications wait for them (an applicant
answered: "needs attention"), with links into the app and no personal details.

Composed as Outbox rows (kind="digest"); the delivery job sends them. The time window runs
from the last run (JobRun "digest") to now, so a run that is repeated or late neither
double-counts nor skips anything.
"""

from __future__ import annotations

import datetime as dt
from email.message import EmailMessage
import uuid
from email.utils import format_datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from intake.ack.compose import LOOP_HEADER
from intake.clock import Clock, utc
from intake.config import Settings
from intake.domain import Kind
from intake.models import Application, ApplicationMessage, JobRun, Message, Outbox, User, UserGroup
from intake.store import needing_attention

JOB = "digest"
FIRST_WINDOW = dt.timedelta(days=1)


def enqueue_digests(session: Session, settings: Settings, clock: Clock) -> int:
    """Add one digest Outbox row per coordinator with something new; returns how many."""
    now = clock.now()
    run = session.get(JobRun, JOB) or JobRun(name=JOB)
    session.add(run)
    since = utc(run.last_run_at) if run.last_run_at else now - FIRST_WINDOW
    queued = 0
    for group in settings.groups:
        new, follow_ups = _counts(session, group.code, since, now)
        # Still waiting is worth a reminder every day, even when nothing new arrived.
        attention = _needs_attention(session, group.code)
        if not (new or follow_ups or attention):
            continue
        for address in _recipients(session, group.code, group.coordinators):
            session.add(_outbox_row(settings, address, group.code, group.display, new, follow_ups, now,
                                    attention=attention))
            queued += 1
    run.last_run_at = now
    run.last_result = f"{queued} digest(s) queued"
    return queued


def _counts(session: Session, code: str, since: dt.datetime, until: dt.datetime) -> tuple[int, int]:
    new = session.scalar(select(func.count()).select_from(Application).where(
        Application.group_code == code, Application.merged_into_id.is_(None),
        Application.created_at > since, Application.created_at <= until)) or 0
    follow_ups = session.scalar(
        select(func.count(func.distinct(Message.id))).select_from(Message)
        .join(ApplicationMessage, ApplicationMessage.message_pk == Message.id)
        .join(Application, Application.id == ApplicationMessage.application_id)
        .where(Application.group_code == code, Message.kind == Kind.FOLLOW_UP.value,
               Message.fetched_at > since, Message.fetched_at <= until)) or 0
    return new, follow_ups


def _needs_attention(session: Session, code: str) -> int:
    return session.scalar(select(func.count()).select_from(Application).where(*needing_attention([code]))) or 0


def _recipients(session: Session, code: str, configured: tuple[str, ...]) -> list[str]:
    """Active coordinator accounts of the group, plus groups.toml's coordinator addresses."""
    users = session.scalars(select(User.email).join(UserGroup).where(
        UserGroup.group_code == code, User.active.is_(True), User.role == "coordinator"))
    return sorted({e.lower() for e in users} | set(configured))


def compose(settings: Settings, to: str, code: str, display: str, new: int, follow_ups: int,
            now: dt.datetime, *, attention: int = 0) -> EmailMessage:
    """The digest email (pure): counts and links only, never names or message content."""
    base = settings["web.base_url"].rstrip("/")
    msg = EmailMessage()
    msg["From"] = settings["smtp.from_address"]
    msg["To"] = to
    waiting = f", {attention} need{'s' if attention == 1 else ''} attention" if attention else ""
    msg["Subject"] = f"{display}: {_plural(new, 'new application')}, {_plural(follow_ups, 'follow-up')}{waiting}"
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = f"<digest-{uuid.uuid4().hex}@{settings.message_id_domain}>"
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies back to us
    msg[LOOP_HEADER] = settings.message_id_domain  # our own mail, if it ever comes back
    msg.set_content(
        f"Since the last digest, the {display} queue received:\n\n"
        f"  {_plural(new, 'new application')}\n  {_plural(follow_ups, 'follow-up message')}\n\n"
        f"Waiting for you now: {_plural(attention, 'application')} marked \"needs attention\"\n"
        "(the applicant wrote back).\n\n"
        f"New applications: {base}/queues/{code}?status=new\n"
        f"Needs attention:  {base}/#attention\n"
        f"The whole queue:  {base}/queues/{code}\n\n"
        "This email holds no personal details; sign in to read them.\n")
    return msg


def _outbox_row(settings: Settings, to: str, code: str, display: str, new: int, follow_ups: int,
                now: dt.datetime, *, attention: int = 0) -> Outbox:
    msg = compose(settings, to, code, display, new, follow_ups, now, attention=attention)
    return Outbox(kind="digest", to_address=to, from_address=settings["smtp.from_address"], subject=msg["Subject"],
                  message_id=msg["Message-ID"].strip("<>"), group_codes=[code], body=msg.as_bytes(),
                  status="pending", next_attempt_at=now, created_by="system")


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
