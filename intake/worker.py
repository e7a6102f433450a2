"""The scheduled worker: one polling job per mailbox, outbox delivery, daily housekeeping.

`build_scheduler` wires jobs onto an APScheduler; `run_once` runs each job once, in order,
for `intake run --once`. Both take their collaborators as arguments (no globals).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import socket
import threading
from dataclasses import dataclass, field

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.orm import Session, sessionmaker

from intake import store
from intake.clock import Clock, utc
from intake.config import MailboxConfig, Settings
from intake.pipeline import PollReport, Ports, poll_mailbox

log = logging.getLogger(__name__)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def build_ports(settings: Settings, clock: Clock) -> Ports:
    """The real edges: IMAP, the acknowledger (templates compiled once), the cipher."""
    from intake.ack import Acknowledger
    from intake.crypto import RawCipher
    from intake.imap import ImapMailbox

    def open_mailbox(cfg: MailboxConfig) -> ImapMailbox:
        return ImapMailbox(cfg, readonly=not cfg.move_to)

    return Ports(open_mailbox=open_mailbox, acknowledger=Acknowledger(settings, clock),
                 cipher=RawCipher.from_settings(settings), clock=clock)


def prepare(settings: Settings, sessions: sessionmaker[Session]) -> None:
    """Start-up work: seed the groups' dates on first start."""
    from intake.ack import seed_dates

    with sessions.begin() as session:
        seeded = seed_dates(session, settings.groups)
    if seeded:
        log.info("seeded %d group dates from %s", seeded, settings["groups.file"])


@dataclass
class CycleReport:
    polls: list[PollReport] = field(default_factory=list)
    delivery: object | None = None


def run_once(settings: Settings, sessions: sessionmaker[Session], ports: Ports) -> CycleReport:
    """Every job once: poll each enabled mailbox, then drain the outbox."""
    from intake.delivery import deliver_due

    report = CycleReport()
    for mailbox in settings.mailboxes:
        if mailbox.enabled:
            report.polls.append(poll_mailbox(sessions, settings, mailbox, ports))
    # Delivery runs even with acks disabled: coordinators' replies and digests use it too.
    report.delivery = deliver_due(sessions, settings, ports.clock, worker_id=worker_id())
    return report


def _poll_job(sessions: sessionmaker[Session], settings: Settings, mailbox: MailboxConfig, ports: Ports) -> None:
    """A scheduled poll; a mailbox in backoff after failures waits for its next attempt."""
    with sessions() as session:
        state = store.mailbox_state(session, mailbox.name, mailbox.folder)
        due = state.next_attempt_at
        session.rollback()
    if due is not None and utc(due) > ports.clock.now():
        log.info("mailbox %s: backing off until %s after %s", mailbox.name, due.isoformat(), "errors")
        return
    report = poll_mailbox(sessions, settings, mailbox, ports)
    log.info(report.summary(), extra={"mailbox": mailbox.name})


def _delivery_job(sessions: sessionmaker[Session], settings: Settings, ports: Ports) -> None:
    from intake.delivery import deliver_due

    result = deliver_due(sessions, settings, ports.clock, worker_id=worker_id())
    if any(getattr(result, f, 0) for f in ("sent", "retried", "failed")):
        log.info("delivery: %s", result)


def _housekeeping_job(sessions: sessionmaker[Session], settings: Settings, ports: Ports) -> None:
    """Daily: retention. Import lazily so the worker runs even if an optional part is broken."""
    from intake.retention import apply_retention

    with sessions.begin() as session:
        result = apply_retention(session, settings, ports.clock.now())
    log.info("retention: %s", result)


def _digest_job(sessions: sessionmaker[Session], settings: Settings, ports: Ports) -> None:
    from intake.digest import enqueue_digests

    with sessions.begin() as session:
        count = enqueue_digests(session, settings, ports.clock)
    log.info("digest: %d queued", count)


def build_scheduler(settings: Settings, sessions: sessionmaker[Session], ports: Ports) -> BackgroundScheduler:
    """Jobs: a poller per mailbox (never overlapping itself, jittered), delivery, daily jobs."""
    scheduler = BackgroundScheduler(timezone="Europe/London")
    now = dt.datetime.now(dt.timezone.utc)
    for i, mailbox in enumerate(m for m in settings.mailboxes if m.enabled):
        scheduler.add_job(
            _poll_job, "interval", args=(sessions, settings, mailbox, ports), id=f"poll:{mailbox.name}",
            seconds=settings["worker.poll_interval"], jitter=settings["worker.jitter"] or None,
            max_instances=1, coalesce=True, next_run_time=now + dt.timedelta(seconds=random.uniform(0, 1) + i * 0.2),
        )
    scheduler.add_job(_delivery_job, "interval", args=(sessions, settings, ports), id="delivery",
                      seconds=settings["worker.delivery_interval"], max_instances=1, coalesce=True, next_run_time=now)
    scheduler.add_job(_housekeeping_job, "cron", args=(sessions, settings, ports), id="retention",
                      hour=3, minute=15, max_instances=1, coalesce=True)
    if settings.values.get("digest.enabled"):
        hour, minute = (int(x) for x in str(settings["digest.time"]).split(":", 1))
        scheduler.add_job(_digest_job, "cron", args=(sessions, settings, ports), id="digest",
                          hour=hour, minute=minute, max_instances=1, coalesce=True)
    return scheduler


def run_forever(settings: Settings, sessions: sessionmaker[Session], ports: Ports, stop: threading.Event) -> None:
    """Run the scheduler until `stop` is set (SIGTERM/SIGINT in the CLI), then stop cleanly."""
    scheduler = build_scheduler(settings, sessions, ports)
    scheduler.start()
    log.info("worker started: %d mailboxes, polling every %ss", len(settings.mailboxes), settings["worker.poll_interval"])
    try:
        stop.wait()
    finally:
        log.info("worker stopping: waiting for running jobs to finish")
        scheduler.shutdown(wait=True)
