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
import functools
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Update, bindparam, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from intake.addresses import parse_address
from intake.clock import Clock
from intake.config import Settings
from intake.db import engine_of
from intake.errors import PermanentDeliveryError, TemporaryDeliveryError
from intake.models import Outbox
from intake.smtp import SmtpSender

log = logging.getLogger(__name__)
CLAIM_SECONDS = 300
DELIVERY_BATCH = 500  # rows per deliver_due call when a run drains the whole outbox


@dataclass(frozen=True)
class DeliveryReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    held: int = 0
    interrupted: int = 0
    error: str = ""

    def __add__(self, later: "DeliveryReport") -> "DeliveryReport":
        """Two runs added up: counts summed; what is held and any error are the later run's."""
        return DeliveryReport(sent=self.sent + later.sent, retried=self.retried + later.retried,
                              failed=self.failed + later.failed, held=later.held,
                              interrupted=self.interrupted + later.interrupted, error=later.error)

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
    counts = {"sent": 0, "retried": 0, "failed": 0}
    envelope_from = _envelope(settings)
    claim_seconds = 2 * settings["smtp.timeout"] + 30
    done: _Result | None = None  # the last row's outcome, committed together with the next claim
    with sender_factory(settings) as sender:
        for row_id in due:
            row = _claim(sessions, row_id, worker_id, clock.now(), claim_seconds=claim_seconds, finish=done)
            done = None
            if row is None:
                continue  # another worker took it
            done = _attempt(sender, envelope_from, row, settings, clock)
            counts[done.counted] += 1
            if done.temporary and not sender.connected:
                break  # unreachable, refused our login or closing (421): the rest waits for the next run
        if done is not None:
            _finish(sessions, done)
    return DeliveryReport(**counts, held=len(held), interrupted=interrupted)


@dataclass(frozen=True)
class _Claimed:
    id: int
    to_address: str
    body: bytes
    attempts: int


@dataclass(frozen=True)
class _Result:
    """One attempt's outcome, as the values its row gets."""

    row_id: int
    to_address: str
    counted: str  # sent | retried | failed
    values: dict[str, Any]
    temporary: bool = False


def _attempt(sender, envelope_from: str, row: _Claimed, settings: Settings, clock: Clock) -> _Result:  # type: ignore[no-untyped-def]
    attempts = row.attempts + 1
    done = {"claimed_by": None, "claimed_until": None, "attempts": attempts}
    try:
        reply = sender.send(envelope_from, row.to_address, row.body)
    except PermanentDeliveryError as exc:
        return _Result(row.id, row.to_address, "failed", {**done, "status": "failed", "last_error": exc.reason[:2000]})
    except TemporaryDeliveryError as exc:
        if attempts >= settings["ack.max_attempts"]:
            error = f"gave up after {attempts} attempts: {exc.reason}"
            return _Result(row.id, row.to_address, "failed", {**done, "status": "failed", "last_error": error[:2000]}, True)
        delay = min(settings["ack.retry_max_seconds"], settings["ack.retry_base_seconds"] * 2 ** (attempts - 1))
        return _Result(row.id, row.to_address, "retried", {**done, "status": "pending", "last_error": exc.reason[:2000],
                                                           "next_attempt_at": clock.now() + dt.timedelta(seconds=delay)}, True)
    values = {**done, "status": "sent", "last_error": "", "sent_at": clock.now()}
    if reply:
        values["smtp_response"] = reply[:1000]
    return _Result(row.id, row.to_address, "sent", values)


def _envelope(settings: Settings) -> str:
    parsed = parse_address(settings["smtp.from_address"])
    return parsed.email if parsed else settings["smtp.from_address"]


def _claim(sessions: sessionmaker[Session], row_id: int, worker_id: str, now: dt.datetime,
           claim_seconds: int = CLAIM_SECONDS, finish: _Result | None = None) -> _Claimed | None:
    """Atomically move one pending row to 'sending' (a conditional UPDATE: one winner).

    The previous row's outcome (`finish`) commits in the same transaction: it is still
    recorded straight after the server answered, and each row costs one commit, not two.
    Core statements built once, on a connection rather than a Session: per message, the ORM's
    session and statement set-up cost as much as the SMTP conversation."""
    with engine_of(sessions).begin() as conn:
        if finish is not None:
            _record(conn, finish)
        claimed = conn.execute(_CLAIM, {"b_row_id": row_id, "b_worker": worker_id,
                                        "b_until": now + dt.timedelta(seconds=claim_seconds)}).first()
        return _Claimed(*claimed) if claimed is not None else None


_OUTBOX = Outbox.__table__
_CLAIM = (update(_OUTBOX).where(_OUTBOX.c.id == bindparam("b_row_id"), _OUTBOX.c.status == "pending")
          .values(status="sending", claimed_by=bindparam("b_worker"), claimed_until=bindparam("b_until"))
          .returning(_OUTBOX.c.id, _OUTBOX.c.to_address, _OUTBOX.c.body, _OUTBOX.c.attempts))


@functools.cache
def _record_statement(columns: tuple[str, ...]) -> Update:
    return update(_OUTBOX).where(_OUTBOX.c.id == bindparam("b_row_id")).values(
        {name: bindparam(f"b_{name}") for name in columns})


def _finish(sessions: sessionmaker[Session], result: _Result) -> None:
    with engine_of(sessions).begin() as conn:
        _record(conn, result)


def _record(conn: Connection, result: _Result) -> None:
    columns = tuple(sorted(result.values))
    conn.execute(_record_statement(columns), {"b_row_id": result.row_id, **{f"b_{k}": result.values[k] for k in columns}})
    if result.values["status"] == "failed":
        log.error("outbox %s to %s failed: %s", result.row_id, result.to_address.split("@")[-1], result.values["last_error"])


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
