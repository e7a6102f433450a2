"""The delivery job against a real aiosmtpd server and a real SQLite database, clock injected."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from intake.cli import main
from intake.clock import FixedClock
from intake.config import load_settings
from intake.db import make_engine, make_sessionmaker, upgrade
from intake.delivery import deliver_due
from intake.models import Application, Outbox
from intake.smtp import SmtpSender
from tests.support.config import write_config

NOW = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.timezone.utc)
OUTBOX_KEYS = {"id", "to", "subject", "status", "attempts", "in_reply_to", "message_id", "application_ids",
               "created_at", "sent_at", "last_error"}


class Env:
    def __init__(self, tmp_path, smtp_server, database_url: str | None = None, **ack):  # type: ignore[no-untyped-def]
        sections = {"ack": {"retry_base_seconds": 30, "retry_max_seconds": 3600, "max_attempts": 8, **ack}}
        self.config = write_config(tmp_path, mailboxes=[], smtp_port=smtp_server.port, sections=sections,
                                   database_url=database_url)
        self.settings = load_settings(self.config, env={})
        upgrade(self.settings["database.url"])
        self.sessions = make_sessionmaker(make_engine(self.settings["database.url"]))
        self.clock = FixedClock(NOW)
        self.smtp = smtp_server
        self._n = 0

    def add(self, to: str = "jane@example.nhs.uk", status: str = "pending", **fields) -> int:  # type: ignore[no-untyped-def]
        self._n += 1
        mid = f"ack-{self._n:04x}@example.org"
        body = (f"From: blfi@example.org\r\nTo: {to}\r\nSubject: Your interest [BLFI-{self._n:06d}]\r\n"
                f"Message-ID: <{mid}>\r\n\r\nThank you.\r\n").encode()
        with self.sessions.begin() as s:
            app = Application(reference=f"BLFI-{self._n:06d}", group_code="SWIG", email=to, received_at=NOW)
            row = Outbox(kind="ack", to_address=to, from_address="blfi@example.org", subject=f"Your interest [BLFI-{self._n:06d}]",
                         message_id=mid, in_reply_to=f"orig-{self._n}@example.nhs.uk", group_codes=["SWIG"], body=body,
                         status=status, attempts=0, next_attempt_at=NOW, created_at=NOW, **fields)
            row.applications.append(app)
            s.add(row)
            s.flush()
            return row.id

    def deliver(self, **kw):  # type: ignore[no-untyped-def]
        return deliver_due(self.sessions, self.settings, self.clock, **kw)

    def row(self, row_id: int) -> Outbox:
        with self.sessions() as s:
            row = s.get(Outbox, row_id)
            s.expunge(row)
            return row

    def cli(self, *args: str) -> str:
        result = CliRunner().invoke(main, ["--config", str(self.config), *args])
        assert result.exit_code == 0, result.output
        return result.output

    def outbox(self) -> list[dict]:
        return json.loads(self.cli("outbox", "list", "--format", "json"))


@pytest.fixture
def env(tmp_path, smtp_server):
    return Env(tmp_path, smtp_server)


def test_due_rows_are_sent_once_and_recorded(env) -> None:
    first, second = env.add("jane@example.nhs.uk"), env.add("sam@example.nhs.uk")
    report = env.deliver()
    assert (report.sent, report.retried, report.failed, report.held) == (2, 0, 0, 0)
    assert [m.rcpt_tos for m in env.smtp.messages] == [["jane@example.nhs.uk"], ["sam@example.nhs.uk"]]
    assert all(m.mail_from == "blfi@example.org" for m in env.smtp.messages)
    row = env.row(first)
    assert row.status == "sent" and row.attempts == 1 and row.smtp_response.startswith("250")
    assert row.sent_at is not None and row.claimed_by is None
    assert env.deliver().sent == 0 and len(env.smtp.messages) == 2   # nothing is sent twice
    listed = env.outbox()
    assert set(listed[0]) == OUTBOX_KEYS
    assert listed[1]["id"] == second and listed[1]["status"] == "sent" and listed[1]["to"] == "sam@example.nhs.uk"
    assert listed[0]["message_id"] == "ack-0001@example.org" and listed[0]["in_reply_to"] == "orig-1@example.nhs.uk"
    assert len(listed[0]["application_ids"]) == 1 and listed[0]["sent_at"]


def test_smtp_down_then_up_rows_wait_and_go_out_once(env) -> None:
    ids = [env.add(f"p{i}@example.nhs.uk") for i in range(3)]
    env.smtp.stop()
    report = env.deliver()
    assert (report.sent, report.retried) == (0, 1)   # the first row records the outage; the rest wait
    assert [env.row(i).status for i in ids] == ["pending"] * 3
    assert env.row(ids[0]).attempts == 1 and "cannot connect" in env.row(ids[0]).last_error
    assert [env.row(i).attempts for i in ids[1:]] == [0, 0]
    env.smtp.start()
    env.clock.advance(seconds=30)
    assert env.deliver().sent == 3
    env.clock.advance(hours=3)
    assert env.deliver().sent == 0
    assert sorted(m.rcpt_tos[0] for m in env.smtp.messages) == ["p0@example.nhs.uk", "p1@example.nhs.uk", "p2@example.nhs.uk"]


def test_temporary_failures_back_off_exponentially_up_to_a_cap(tmp_path, smtp_server) -> None:
    env = Env(tmp_path, smtp_server, retry_base_seconds=30, retry_max_seconds=100, max_attempts=5)
    row_id = env.add()
    delays = []
    for _ in range(4):
        env.smtp.fail_next(451, 1, "4.3.0 greylisted")
        before = env.clock.now()
        report = env.deliver()
        assert report.retried == 1
        row = env.row(row_id)
        assert row.status == "pending" and "451" in row.last_error
        delays.append((row.next_attempt_at.replace(tzinfo=dt.timezone.utc) - before).total_seconds())
        assert env.deliver().retried == 0   # not due before its time: no attempt, no mail
        env.clock.advance(seconds=delays[-1])
    assert delays == [30, 60, 100, 100]
    env.smtp.fail_next(451, 1)
    report = env.deliver()
    row = env.row(row_id)
    assert report.failed == 1 and row.status == "failed" and row.attempts == 5
    assert "gave up after 5 attempts" in row.last_error
    assert env.smtp.messages == []


def test_permanent_failure_is_recorded_and_not_retried(env) -> None:
    bad, good = env.add("nobody@example.nhs.uk"), env.add("jane@example.nhs.uk")
    env.smtp.fail_next(550, 1, "5.1.1 mailbox unavailable")
    report = env.deliver()
    assert (report.sent, report.failed) == (1, 1)
    row = env.row(bad)
    assert row.status == "failed" and row.attempts == 1 and "550 5.1.1 mailbox unavailable" in row.last_error
    env.clock.advance(days=2)
    assert env.deliver().failed == 0 and env.row(bad).attempts == 1
    assert [m.rcpt_tos for m in env.smtp.messages] == [["jane@example.nhs.uk"]]
    assert env.row(good).status == "sent"


def test_421_stops_the_run_and_the_rest_waits(env) -> None:
    ids = [env.add(f"p{i}@example.nhs.uk") for i in range(3)]
    env.smtp.fail_next(421, 1, "4.3.2 shutting down")
    report = env.deliver()
    assert (report.sent, report.retried) == (0, 1)
    assert [env.row(i).attempts for i in ids] == [1, 0, 0]
    env.clock.advance(seconds=30)
    assert env.deliver().sent == 3


def test_held_rows_stay_held_until_released(env) -> None:
    held = env.add(status="held", last_error="over the hourly cap of 1: held")
    report = env.deliver()
    assert (report.sent, report.held) == (0, 1) and env.smtp.messages == []
    assert "1: queued" in env.cli("outbox", "release", str(held))
    assert env.deliver().sent == 1 and env.row(held).status == "sent"


class _DiesAfterSending:
    """A real SmtpSender in a process that is killed right after the server accepts the
    message: the fault a real server cannot produce (the crash is ours)."""

    def __init__(self, settings):  # type: ignore[no-untyped-def]
        self.inner = SmtpSender(settings)

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc: object) -> None:
        self.inner.close()

    @property
    def connected(self) -> bool:
        return self.inner.connected

    def send(self, envelope_from: str, to: str, data: bytes) -> str:
        self.inner.send(envelope_from, to, data)
        raise SystemExit("killed")


def test_crash_after_acceptance_is_flagged_not_resent(env) -> None:
    row_id = env.add()
    with pytest.raises(SystemExit):
        env.deliver(sender_factory=_DiesAfterSending)
    assert len(env.smtp.messages) == 1
    assert env.row(row_id).status == "sending"
    assert env.deliver().sent == 0                 # still claimed: another run leaves it alone
    env.clock.advance(hours=1)                     # the claim has expired
    report = env.deliver()
    row = env.row(row_id)
    assert report.interrupted == 1 and row.status == "failed" and "interrupted while sending" in row.last_error
    assert len(env.smtp.messages) == 1             # never resent blindly
    env.cli("outbox", "retry", str(row_id))         # a person checked and decided
    assert env.deliver().sent == 1 and len(env.smtp.messages) == 2


def test_two_workers_never_send_a_row_twice(env) -> None:
    _race_two_workers(env)


def test_two_workers_on_postgresql_never_send_a_row_twice(tmp_path, smtp_server, postgres_url) -> None:
    _race_two_workers(Env(tmp_path, smtp_server, database_url=postgres_url))


def _race_two_workers(env: Env) -> None:
    for i in range(30):
        env.add(f"p{i}@example.nhs.uk")
    reports = []
    threads = [threading.Thread(target=lambda w=w: reports.append(env.deliver(worker_id=f"w{w}"))) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.sent for r in reports) == 30
    assert sorted(m.rcpt_tos[0] for m in env.smtp.messages) == sorted(f"p{i}@example.nhs.uk" for i in range(30))
    with env.sessions() as s:
        assert set(s.execute(select(Outbox.status)).scalars()) == {"sent"}


def test_delivery_reports_add_up_counts_and_keep_the_later_runs_state() -> None:
    from intake.delivery import DeliveryReport

    first = DeliveryReport(sent=3, retried=1, failed=1, held=4, interrupted=1, error="")
    later = DeliveryReport(sent=2, retried=0, failed=2, held=1, interrupted=0, error="smtp down")
    assert first + later == DeliveryReport(sent=5, retried=1, failed=3, held=1, interrupted=1, error="smtp down")
