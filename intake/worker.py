"""The scheduled worker: one polling job per mailbox, outbox delivery, daily housekeeping.

`build_scheduler` wires jobs onto an APScheduler; `run_once` runs each job once, in order,
for `intake run --once`. Both take their collaborators as arguments (no globals).
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.orm import Session, sessionmaker

from intake import store
from intake.clock import Clock, SystemClock, utc
from intake.config import MailboxConfig, Settings
from intake.db import engine_of
from intake.delivery import DELIVERY_BATCH, DeliveryReport, deliver_due
from intake.pipeline import PollReport, Ports, poll_mailbox
from intake.store import worker_id

if TYPE_CHECKING:
    from intake.delivery_process import DeliveryProcess

log = logging.getLogger(__name__)


def build_ports(settings: Settings, clock: Clock) -> Ports:
    """The real edges: IMAP, the acknowledger (templates compiled once), the cipher."""
    from intake.ack import Acknowledger
    from intake.crypto import RawCipher
    from intake.imap import ImapMailbox

    def open_mailbox(cfg: MailboxConfig) -> ImapMailbox:
        return ImapMailbox(cfg, readonly=not cfg.move_to, base_dir=settings.base_dir)

    return Ports(open_mailbox=open_mailbox, acknowledger=Acknowledger(settings, clock),
                 cipher=RawCipher.from_settings(settings), clock=clock)


def prepare(settings: Settings, sessions: sessionmaker[Session]) -> None:
    """Start-up work: seed the groups' dates on first start."""
    from sqlalchemy.exc import IntegrityError

    from intake.ack import seed_dates

    try:
        with sessions.begin() as session:
            seeded = seed_dates(session, settings.groups)
    except IntegrityError:
        # Several workers starting together on one database: another one seeded the same
        # dates (same stable UIDs) first. Its copy is the one we would have written.
        log.info("group dates were seeded by another worker starting at the same time")
        return
    if seeded:
        log.info("seeded %d group dates from %s", seeded, settings["groups.file"])


@dataclass
class CycleReport:
    polls: list[PollReport] = field(default_factory=list)
    delivery: object | None = None
    delivered_beside: int | None = None  # sent by the delivery process, when one ran


def run_once(settings: Settings, sessions: sessionmaker[Session], ports: Ports) -> CycleReport:
    """Every job once: poll each enabled mailbox, then drain the outbox.

    On a backlog (once `worker.delivery_process_after` acknowledgements are queued in this
    run) delivery moves to a second process beside the polls, so acknowledgements go out
    while later mail is read, on the machine's other core (intake/delivery_process.py)."""
    report = CycleReport()
    totals = _DeliveryTotals()
    beside = _DeliveryBeside(settings, ports)
    try:
        for mailbox in settings.mailboxes:
            if mailbox.enabled:
                report.polls.append(poll_mailbox(sessions, settings, mailbox, ports, worker=worker_id(),
                                                 on_batch=beside.after_batch))
    finally:
        beside_report = beside.finish()
    if beside_report is not None:
        totals.add(beside_report)
        report.delivered_beside = beside_report.sent
    # Delivery runs even with acks disabled: coordinators' replies and digests use it too.
    # --once drains everything due, a batch at a time.
    if not totals.total.error:
        while True:
            batch = totals.add(_deliver_batch(sessions, settings, ports))
            if batch.error or batch.sent + batch.retried + batch.failed < DELIVERY_BATCH:
                break
    report.delivery = totals.total
    return report


def _deliver_batch(sessions: sessionmaker[Session], settings: Settings, ports: Ports) -> DeliveryReport:
    return deliver_due(sessions, settings, ports.clock, worker_id=worker_id(), limit=DELIVERY_BATCH)


class _DeliveryBeside:
    """Starts the delivery process once the polls it watches (a run's, or one scheduled
    poll's) have queued enough acknowledgements."""

    def __init__(self, settings: Settings, ports: Ports):
        self.settings = settings
        self.threshold = settings["worker.delivery_process_after"]
        # The process keeps its own time: a clock given to this run (a test's) cannot follow it there.
        self.enabled = self.threshold > 0 and isinstance(ports.clock, SystemClock)
        self.queued = 0
        self.process: "DeliveryProcess | None" = None

    def after_batch(self, batch: PollReport) -> None:
        self.queued += batch.acks_queued
        if not self.enabled or self.process is not None or self.queued < self.threshold:
            return
        from intake.delivery_process import DeliveryProcess

        try:
            self.process = DeliveryProcess(self.settings).start()
        except Exception as exc:  # noqa: BLE001 - no second process: delivery follows the polls, as on a small run
            self.enabled = False
            log.warning("could not start the delivery process (%s: %s); delivering after the polls", type(exc).__name__, exc)
            return
        log.info("%d acknowledgements queued: delivering from a second process (pid %s) beside the polls",
                 self.queued, self.process.pid)

    def finish(self) -> DeliveryReport | None:
        """The process's report (None when none ran, or it died: the worker delivers the rest)."""
        return self.process.finish() if self.process is not None else None


class _DeliveryTotals:
    """Delivery reports of one cycle added up (from the delivery process and the final drain)."""

    def __init__(self) -> None:
        self.total = DeliveryReport()

    def add(self, batch: DeliveryReport) -> DeliveryReport:
        self.total = self.total + batch
        return batch


class CoalescingJob:
    """Runs `work` so that calls from several threads never overlap.

    A call while a run is in progress does not start a second one: it asks the running one
    to go round once more, so mail that arrived mid-run is not left for the next interval.
    """

    def __init__(self, name: str, work: Callable[[], None], mailbox: MailboxConfig | None = None):
        self.name, self.work, self.mailbox = name, work, mailbox
        self._lock = threading.Lock()
        self._pending = threading.Event()

    def __call__(self) -> None:
        self._pending.set()
        while self._pending.is_set() and self._lock.acquire(blocking=False):
            try:
                while self._pending.is_set():
                    self._pending.clear()
                    self.work()
            finally:
                self._lock.release()


def delivery_job(sessions: sessionmaker[Session], settings: Settings, ports: Ports) -> CoalescingJob:
    def deliver() -> None:
        result = deliver_due(sessions, settings, ports.clock, worker_id=worker_id())
        if result.sent or result.retried or result.failed:
            log.info("delivery: %s", result)

    return CoalescingJob("delivery", deliver)


def mailbox_job(sessions: sessionmaker[Session], settings: Settings, mailbox: MailboxConfig, ports: Ports,
                deliver: CoalescingJob | None = None) -> CoalescingJob:
    """A poll of one mailbox that honours its backoff; new acks are delivered at once."""

    def poll() -> None:
        with sessions() as session:
            due = store.mailbox_state(session, mailbox.name, mailbox.folder).next_attempt_at
            session.rollback()
        if due is not None and utc(due) > ports.clock.now():
            log.info("mailbox %s: backing off after errors until %s", mailbox.name, due.isoformat())
            return
        # A poll that meets a backlog delivers from a second process while it reads on.
        beside = _DeliveryBeside(settings, ports)
        try:
            report = poll_mailbox(sessions, settings, mailbox, ports, worker=worker_id(), on_batch=beside.after_batch)
        finally:
            beside_report = beside.finish()
        log.info(report.summary(), extra={"mailbox": mailbox.name})
        if beside_report is not None:
            log.info("delivery process: %s", beside_report)
        if report.acks_queued and deliver is not None:
            deliver()

    return CoalescingJob(f"poll:{mailbox.name}", poll, mailbox)


def _housekeeping_job(sessions: sessionmaker[Session], settings: Settings, ports: Ports) -> None:
    """Daily: retention. Import lazily so the worker runs even if an optional part is broken."""
    from intake.retention import apply_retention

    from intake.subject import scrub_storage

    with sessions.begin() as session:
        result = apply_retention(session, settings, ports.clock.now())
    log.info("retention: %s", result)
    # Purged raw mail must leave the disk too, not linger in free pages or the WAL.
    if not scrub_storage(engine_of(sessions)):
        log.info("retention: storage scrub deferred (a reader held the WAL); it runs again tomorrow")


def _digest_job(sessions: sessionmaker[Session], settings: Settings, ports: Ports) -> None:
    from intake.digest import enqueue_digests

    with sessions.begin() as session:
        count = enqueue_digests(session, settings, ports.clock)
    log.info("digest: %d queued", count)


def build_scheduler(settings: Settings, sessions: sessionmaker[Session], ports: Ports,
                    jobs: list[CoalescingJob], deliver: CoalescingJob) -> BackgroundScheduler:
    """Jobs: a poller per mailbox (never overlapping itself, jittered), delivery, daily jobs."""
    scheduler = BackgroundScheduler(timezone="Europe/London")
    now = dt.datetime.now(dt.timezone.utc)
    for i, job in enumerate(jobs):
        scheduler.add_job(
            job, "interval", id=job.name,
            seconds=settings["worker.poll_interval"], jitter=settings["worker.jitter"] or None,
            max_instances=1, coalesce=True, next_run_time=now + dt.timedelta(seconds=random.uniform(0, 1) + i * 0.2),
        )
    scheduler.add_job(deliver, "interval", id="delivery",
                      seconds=settings["worker.delivery_interval"], max_instances=1, coalesce=True, next_run_time=now)
    scheduler.add_job(_housekeeping_job, "cron", args=(sessions, settings, ports), id="retention",
                      hour=3, minute=15, max_instances=1, coalesce=True)
    if settings.values.get("digest.enabled"):
        hour, minute = (int(x) for x in str(settings["digest.time"]).split(":", 1))
        scheduler.add_job(_digest_job, "cron", args=(sessions, settings, ports), id="digest",
                          hour=hour, minute=minute, max_instances=1, coalesce=True)
    return scheduler


class IdleWatcher(threading.Thread):
    """Holds one mailbox in IMAP IDLE and runs its poll job as soon as mail arrives.

    Re-issues IDLE well before servers drop idle clients (RFC 2177 suggests 29 minutes);
    on any error it backs off and reconnects. The scheduled poll is the safety net, so a
    watcher that cannot IDLE costs latency, never mail.
    """

    REISSUE_SECONDS = 25 * 60

    def __init__(self, job: CoalescingJob, ports: Ports, stop: threading.Event):
        super().__init__(name=f"idle:{job.mailbox.name}", daemon=True)
        assert job.mailbox is not None
        self.job, self.mailbox, self.ports, self.stop_event = job, job.mailbox, ports, stop

    def run(self) -> None:
        from intake.errors import MailboxError

        failures = 0
        while not self.stop_event.is_set():
            try:
                with self.ports.open_mailbox(self.mailbox) as box:
                    if "IDLE" not in getattr(box, "capabilities", frozenset()):
                        log.info("mailbox %s: server does not offer IDLE; polling only", self.mailbox.name)
                        return
                    failures = 0
                    self._watch(box)
            except MailboxError as exc:
                failures += 1
                delay = min(300, 5 * 2 ** min(failures, 6))
                log.warning("mailbox %s: IDLE connection failed (%s); retrying in %ss", self.mailbox.name, exc.reason, delay)
                self.stop_event.wait(delay)

    def _watch(self, box) -> None:  # type: ignore[no-untyped-def]
        while not self.stop_event.is_set():
            # Short IDLE slices so a stop request is honoured within seconds.
            started = dt.datetime.now(dt.timezone.utc)
            while not self.stop_event.is_set():
                if box.idle_wait(timeout=5):
                    self.job()
                if (dt.datetime.now(dt.timezone.utc) - started).total_seconds() > self.REISSUE_SECONDS:
                    break


def wait_for(stop: threading.Event) -> None:
    """Block until `stop` is set, waking every second. Python runs signal handlers only in
    the main thread, between bytecodes: a main thread parked in an untimed wait may never
    see a SIGTERM the kernel handed to one of the worker's other threads."""
    while not stop.wait(timeout=1.0):
        pass


def run_forever(settings: Settings, sessions: sessionmaker[Session], ports: Ports, stop: threading.Event) -> None:
    """Run the scheduler (and IDLE watchers) until `stop` is set, then stop cleanly."""
    deliver = delivery_job(sessions, settings, ports)
    jobs = [mailbox_job(sessions, settings, m, ports, deliver) for m in settings.mailboxes if m.enabled]
    scheduler = build_scheduler(settings, sessions, ports, jobs, deliver)
    scheduler.start()
    watchers = [IdleWatcher(job, ports, stop) for job in jobs if job.mailbox and job.mailbox.idle]
    for watcher in watchers:
        watcher.start()
    log.info("worker started: %d mailboxes, polling every %ss, %d with IDLE", len(settings.mailboxes),
             settings["worker.poll_interval"], len(watchers))
    try:
        wait_for(stop)
    finally:
        log.info("worker stopping: waiting for running jobs to finish")
        scheduler.shutdown(wait=True)
        for watcher in watchers:
            watcher.join(timeout=10)
