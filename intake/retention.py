"""Retention: what is purged or anonymised when, planned (dry run) and applied.

Policy ([retention] in intake.toml):
  raw_days         raw messages and attachment bytes older than this are deleted
                   (the parsed message row stays: dedupe and the queue history need it)
  closed_days      applications closed (accepted, declined, withdrawn, undeliverable) longer
                   than this are anonymised: the person's details are cleared, their
                   messages lose bodies, addresses and raw bytes, their outbox rows lose bodies
  quarantine_days  quarantined raw mail older than this is deleted
  erase_on_withdrawal  a person whose every application is withdrawn, and whose withdrawal
                   has been confirmed by a sent reply, is erased (intake.subject)
Every run is audited with counts, never content. The selection is the same function for
`plan_retention` (counts only) and `apply_retention`, so a dry run shows what a run does.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.orm import Session

from intake.audit import record
from intake.config import Settings
from intake.domain import CLOSED_STATUSES
from intake.models import (
    Application,
    ApplicationMessage,
    AttachmentRow,
    JobRun,
    Message,
    Outbox,
    OutboxApplication,
    Quarantine,
    RawMessageRow,
)

CLOSED = tuple(sorted(s.value for s in CLOSED_STATUSES))


@dataclass(frozen=True)
class RetentionReport:
    raw_purged: int
    attachments_purged: int
    applications_anonymised: int
    quarantine_purged: int
    withdrawals_erased: int = 0

    def __str__(self) -> str:
        return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in asdict(self).items())


@dataclass(frozen=True)
class Cutoffs:
    raw: dt.datetime
    closed: dt.datetime
    quarantine: dt.datetime

    @classmethod
    def of(cls, settings: Settings, now: dt.datetime) -> "Cutoffs":
        days = lambda key: now - dt.timedelta(days=settings[key])  # noqa: E731
        return cls(days("retention.raw_days"), days("retention.closed_days"), days("retention.quarantine_days"))


# -- selection (shared by plan and apply) -----------------------------------------------
def _raw_ids(c: Cutoffs) -> Select:
    return select(RawMessageRow.message_pk).where(RawMessageRow.stored_at < c.raw)


def _attachment_ids(c: Cutoffs) -> Select:
    old = select(Message.id).where(Message.fetched_at < c.raw)
    return select(AttachmentRow.id).where(AttachmentRow.data.is_not(None), AttachmentRow.message_pk.in_(old))


def _closed_app_ids(c: Cutoffs) -> Select:
    return select(Application.id).where(Application.status.in_(CLOSED), Application.anonymised_at.is_(None),
                                        Application.status_changed_at < c.closed)


def _quarantine_ids(c: Cutoffs) -> Select:
    return select(Quarantine.id).where(Quarantine.created_at < c.quarantine)


def _count(session: Session, query: Select) -> int:
    return session.execute(select(func.count()).select_from(query.subquery())).scalar_one()


def plan_retention(session: Session, settings: Settings, now: dt.datetime) -> RetentionReport:
    """What a run at `now` would purge or anonymise (changes nothing)."""
    from intake.subject import confirmed_withdrawals

    c = Cutoffs.of(settings, now)
    erasable = confirmed_withdrawals(session) if settings["retention.erase_on_withdrawal"] else []
    return RetentionReport(_count(session, _raw_ids(c)), _count(session, _attachment_ids(c)),
                           _count(session, _closed_app_ids(c)), _count(session, _quarantine_ids(c)), len(erasable))


def apply_retention(session: Session, settings: Settings, now: dt.datetime, *, actor: str = "system") -> RetentionReport:
    """Purge and anonymise in the caller's transaction; audit the counts.

    On SQLite the freed pages still hold the old bytes until `intake.subject.scrub_storage`
    runs after the commit (`intake retention run` does; so should the daily job)."""
    c = Cutoffs.of(settings, now)
    erased = _erase_withdrawals(session, settings, actor) if settings["retention.erase_on_withdrawal"] else 0
    app_ids = list(session.execute(_closed_app_ids(c)).scalars())
    anonymised = anonymise_applications(session, app_ids, now)
    att_ids = list(session.execute(_attachment_ids(c)).scalars())
    if att_ids:
        session.execute(update(AttachmentRow).where(AttachmentRow.id.in_(att_ids)).values(data=None)
                        .execution_options(synchronize_session=False))
    raw = session.execute(delete(RawMessageRow).where(RawMessageRow.message_pk.in_(_raw_ids(c)))
                          .execution_options(synchronize_session=False)).rowcount
    quarantined = session.execute(delete(Quarantine).where(Quarantine.created_at < c.quarantine)
                                  .execution_options(synchronize_session=False)).rowcount
    report = RetentionReport(raw, len(att_ids), anonymised, quarantined, erased)
    record(session, actor=actor, action="retention.run", target_type="retention", details=asdict(report))
    _note_run(session, now, report)
    session.expire_all()
    return report


def anonymise_applications(session: Session, app_ids: list[int], now: dt.datetime) -> int:
    """Clear the person from these applications, their messages and their outbox rows.

    A message or outbox row also linked to an application that stays is left alone: it
    is still that open application's history."""
    if not app_ids:
        return 0
    session.execute(update(Application).where(Application.id.in_(app_ids)).values(
        name="", email=None, job_title="", organisation="", notes="", anonymised_at=now)
        .execution_options(synchronize_session=False))
    msg_ids = _only_linked_to(session, ApplicationMessage.message_pk, ApplicationMessage.application_id, app_ids)
    if msg_ids:
        session.execute(delete(RawMessageRow).where(RawMessageRow.message_pk.in_(msg_ids)))
        session.execute(delete(AttachmentRow).where(AttachmentRow.message_pk.in_(msg_ids)))
        session.execute(update(Message).where(Message.id.in_(msg_ids)).values(
            body_text="", body_html="", from_address="", from_name="", reply_to="", to_addresses=[], subject="")
            .execution_options(synchronize_session=False))
    out_ids = _only_linked_to(session, OutboxApplication.outbox_id, OutboxApplication.application_id, app_ids)
    if out_ids:
        session.execute(update(Outbox).where(Outbox.id.in_(out_ids)).values(body=b"", to_address="", subject="")
                        .execution_options(synchronize_session=False))
    return len(app_ids)


def _only_linked_to(session: Session, item_col, app_col, app_ids: list[int]) -> list[int]:  # type: ignore[no-untyped-def]
    """Items linked to one of app_ids and to no application that keeps its details."""
    linked = set(session.execute(select(item_col).where(app_col.in_(app_ids))).scalars())
    if not linked:
        return []
    kept = select(Application.id).where(Application.id.not_in(app_ids), Application.anonymised_at.is_(None))
    shared = set(session.execute(select(item_col).where(item_col.in_(linked), app_col.in_(kept))).scalars())
    return sorted(linked - shared)


def _erase_withdrawals(session: Session, settings: Settings, actor: str) -> int:
    from intake.crypto import RawCipher
    from intake.subject import confirmed_withdrawals, erase_subject

    emails = confirmed_withdrawals(session)
    cipher = RawCipher.from_settings(settings) if emails else None  # to search encrypted quarantine
    for email in emails:
        erase_subject(session, email, actor=actor, cipher=cipher, reason="withdrawal")
    return len(emails)


def _note_run(session: Session, now: dt.datetime, report: RetentionReport) -> None:
    row = session.get(JobRun, "retention") or JobRun(name="retention")
    row.last_run_at, row.last_result = now, str(report)
    session.add(row)

