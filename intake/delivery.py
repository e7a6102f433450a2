"""The delivery job: due outbox rows -> SMTP, with retries, exactly once where it can be.

Each row is claimed (status 'sending', claimed_by, claimed_until) in its own committed
transaction before SMTP is spoken, and marked 'sent' in another transaction straight after
the server accepts it. The only window for a duplicate is a crash between the server's
acceptance and that commit (milliseconds). A row found still 'sending' after its claim
expired was interrupted inside that window or before it; it is NOT sent again
automatically (that would risk a duplicate): it is marked 'failed' with a reason saying
so, and `intake outbox retry ID` sends it after a human has checked.

Temporary failures (4xx, connection trouble) are retried with exponential backoff up to
ack.max_attempts; permanent failures (5xx) are recorded as 'failed' at once.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from intake.addresses import parse_address
from intake.clock import Clock
from intake.config import Settings
from intake.errors import PermanentDeliveryError, TemporaryDeliveryError
from intake.models import Outbox
from intake.smtp import SmtpSender

log = logging.getLogger(__name__)
CLAIM_SECONDS = 300


@dataclass(frozen=True)
class DeliveryReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    held: int = 0
    interrupted: int = 0
    error: str = ""

    def __str__(self) -> str:
        text = f"sent {self.sent}, retrying {self.retried}, failed {self.failed}, held {self.held}"
        return f"{text}; FAILED: {self.error}" if self.error else text


def deliver_due(sessions: sessionmaker[Session], settings: Settings, clock: Clock, *, worker_id: str = "local",
                limit: int = 500, sender_factory=SmtpSender) -> DeliveryReport:  # type: ignore[no-untyped-def]
    """Send every due pending row (at most `limit`), reusing one SMTP connection.

    A database failure ends the run with the error in the report (rows already claimed stay
    'sending' and are flagged as interrupted by a later run, never resent blindly)."""
    try:
        return _deliver(sessions, settings, clock, worker_id, limit, sender_factory)
    except SQLAlchemyError as exc:
        reason = f"database error: {type(exc).__name__}: {exc}".splitlines()[0]
        log.error("delivery stopped: %s", reason)
        return DeliveryReport(error=reason)


def _deliver(sessions: sessionmaker[Session], settings: Settings, clock: Clock, worker_id: str, limit: int,
             sender_factory) -> DeliveryReport:  # type: ignore[no-untyped-def]
    now = clock.now()
    interrupted = _fail_interrupted(sessions, now)
    with sessions() as session:
        due = list(session.execute(
            select(Outbox.id).where(Outbox.status == "pending", or_(Outbox.next_attempt_at.is_(None), Outbox.next_attempt_at <= now))
            .order_by(Outbox.id).limit(limit)).scalars())
        held = session.execute(select(Outbox.id).where(Outbox.status == "held")).scalars().all()
    sent = retried = failed = 0
    envelope_from = _envelope(settings)
    with sender_factory(settings) as sender:
        for row_id in due:
            row = _claim(sessions, row_id, worker_id, clock.now(), claim_seconds=2 * settings["smtp.timeout"] + 30)
            if row is None:
                continue  # another worker took it
            try:
                reply = sender.send(envelope_from, row.to_address, row.body)
            except PermanentDeliveryError as exc:
                _finish(sessions, row_id, status="failed", error=exc.reason, attempts=row.attempts + 1)
                failed += 1
            except TemporaryDeliveryError as exc:
                attempts = row.attempts + 1
                if attempts >= settings["ack.max_attempts"]:
                    _finish(sessions, row_id, status="failed", error=f"gave up after {attempts} attempts: {exc.reason}", attempts=attempts)
                    failed += 1
                else:
                    delay = min(settings["ack.retry_max_seconds"], settings["ack.retry_base_seconds"] * 2 ** (attempts - 1))
                    _finish(sessions, row_id, status="pending", error=exc.reason, attempts=attempts,
                            next_attempt_at=clock.now() + dt.timedelta(seconds=delay))
                    retried += 1
                if not sender.connected:
                    break  # unreachable, refused our login or closing (421): the rest waits for the next run
            else:
                _finish(sessions, row_id, status="sent", error="", attempts=row.attempts + 1, reply=reply, sent_at=clock.now())
                sent += 1
    return DeliveryReport(sent=sent, retried=retried, failed=failed, held=len(held), interrupted=interrupted)


def _envelope(settings: Settings) -> str:
    parsed = parse_address(settings["smtp.from_address"])
    return parsed.email if parsed else settings["smtp.from_address"]


def _claim(sessions: sessionmaker[Session], row_id: int, worker_id: str, now: dt.datetime,
           claim_seconds: int = CLAIM_SECONDS) -> Outbox | None:
    """Atomically move one pending row to 'sending' (a conditional UPDATE: one winner)."""
    with sessions.begin() as session:
        result = session.execute(
            update(Outbox).where(Outbox.id == row_id, Outbox.status == "pending")
            .values(status="sending", claimed_by=worker_id, claimed_until=now + dt.timedelta(seconds=claim_seconds))
            .execution_options(synchronize_session=False))
        if result.rowcount != 1:
            return None
        row = session.get(Outbox, row_id)
        session.expunge(row)  # type: ignore[arg-type]
        return row


def _finish(sessions: sessionmaker[Session], row_id: int, *, status: str, error: str, attempts: int,
            reply: str = "", sent_at: dt.datetime | None = None, next_attempt_at: dt.datetime | None = None) -> None:
    with sessions.begin() as session:
        row = session.get(Outbox, row_id)
        assert row is not None
        row.status, row.last_error, row.attempts = status, error[:2000], attempts
        row.claimed_by, row.claimed_until = None, None
        if reply:
            row.smtp_response = reply[:1000]
        if sent_at:
            row.sent_at = sent_at
        if next_attempt_at:
            row.next_attempt_at = next_attempt_at
        if status == "failed":
            log.error("outbox %s to %s failed: %s", row_id, row.to_address.split("@")[-1], error)


def _fail_interrupted(sessions: sessionmaker[Session], now: dt.datetime) -> int:
    """Rows left 'sending' by a worker that died: never resent blindly (see module doc)."""
    with sessions.begin() as session:
        result = session.execute(
            update(Outbox).where(Outbox.status == "sending", Outbox.claimed_until < now)
            .values(status="failed", claimed_by=None, claimed_until=None,
                    last_error="interrupted while sending: it may or may not have been delivered; "
                               "check, then `intake outbox retry` to send it again")
            .execution_options(synchronize_session=False))
        count = result.rowcount or 0
    if count:
        log.error("%d outbox message(s) were interrupted while sending and need a check: see `intake outbox list --status failed`", count)
    return count
