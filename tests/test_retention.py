"""Retention against a real SQLite file with an injected clock: raw purge, anonymisation of
closed applications, quarantine purge, erasure after a confirmed withdrawal, the CLI."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from intake.cli import main
from intake.clock import FixedClock
from intake.config import load_settings
from intake.db import make_engine, make_sessionmaker, upgrade
from intake.models import (
    Application,
    ApplicationMessage,
    AttachmentRow,
    AuditEvent,
    JobRun,
    Message,
    Outbox,
    Quarantine,
    RawMessageRow,
    Tombstone,
)
from intake.retention import RetentionReport, apply_retention, plan_retention
from tests.support.config import write_config

T0 = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
_n = iter(range(1, 100_000))


@pytest.fixture
def env(tmp_path):
    path = tmp_path / "intake.db"

    def make(**retention):
        config = write_config(tmp_path, mailboxes=[], database_url=f"sqlite:///{path}",
                              sections={"retention": retention} if retention else None)
        return config, load_settings(config, env={})

    upgrade(f"sqlite:///{path}")
    engine = make_engine(f"sqlite:///{path}")
    yield make, make_sessionmaker(engine)
    engine.dispose()


def _message(session, email: str, at: dt.datetime, *, attachment: bool = True) -> Message:
    n = next(_n)
    m = Message(message_id=f"<m{n}@x>", message_id_key=f"m{n}@x", content_hash=f"{n:064d}", mailbox="swig",
                kind="interest", from_address=email, from_name="Sara Khan", to_addresses=["swig@example.org"],
                subject="Interest", received_at=at, fetched_at=at, body_text="I am Sara Khan", body_html="<p>Sara</p>")
    m.raw = RawMessageRow(data=b"raw Sara Khan", encrypted=False, stored_at=at)
    if attachment:
        m.attachments.append(AttachmentRow(filename="cv.pdf", size=3, data=b"cv!", encrypted=False))
    session.add(m)
    session.flush()
    return m


def _application(session, email: str, group: str, status: str, changed: dt.datetime, messages) -> Application:
    app = Application(group_code=group, status=status, name="Sara Khan", email=email, job_title="Head of HR",
                      organisation="Bradford NHS", notes="keen", received_at=T0, status_changed_at=changed)
    session.add(app)
    session.flush()
    for m in messages:
        session.add(ApplicationMessage(application_id=app.id, message_pk=m.id))
    return app


def _ack(session, email: str, apps, kind: str = "ack", status: str = "sent") -> Outbox:
    row = Outbox(kind=kind, to_address=email, subject="Your interest", message_id=f"ack-{next(_n)}@x",
                 body=b"Dear Sara Khan", status=status, created_at=T0)
    row.applications.extend(apps)
    session.add(row)
    return row


def _quarantine(session, at: dt.datetime) -> None:
    session.add(Quarantine(mailbox="swig", uid=next(_n), content_hash=f"q{next(_n):063d}", data=b"broken",
                           reason="unparseable", created_at=at))


def test_raw_messages_and_attachments_go_after_raw_days(env) -> None:
    make, sessions = env
    _, settings = make(raw_days=90)
    with sessions.begin() as session:
        old = _message(session, "a@example.nhs.uk", T0)
        recent = _message(session, "b@example.nhs.uk", T0 + dt.timedelta(days=30))
    clock = FixedClock(T0 + dt.timedelta(days=89))
    with sessions.begin() as session:
        assert plan_retention(session, settings, clock.now()) == RetentionReport(0, 0, 0, 0)
    clock.advance(days=2)
    with sessions.begin() as session:
        assert plan_retention(session, settings, clock.now()) == RetentionReport(1, 1, 0, 0)
        assert apply_retention(session, settings, clock.now()) == RetentionReport(1, 1, 0, 0)
    with sessions() as session:
        assert session.get(RawMessageRow, old.id) is None
        assert session.get(RawMessageRow, recent.id) is not None
        att = {a.message_pk: a for a in session.execute(select(AttachmentRow)).scalars()}
        assert att[old.id].data is None and att[old.id].filename == "cv.pdf"  # metadata stays
        assert att[recent.id].data == b"cv!"
        assert session.get(Message, old.id).body_text  # the parsed message stays (queue history)
    with sessions.begin() as session:  # idempotent: nothing left to purge
        assert apply_retention(session, settings, clock.now()) == RetentionReport(0, 0, 0, 0)


def test_closed_applications_are_anonymised_after_closed_days(env) -> None:
    make, sessions = env
    _, settings = make(closed_days=365, raw_days=10_000)
    with sessions.begin() as session:
        m1 = _message(session, "sara@example.nhs.uk", T0)
        closed = _application(session, "sara@example.nhs.uk", "SWIG", "declined", T0, [m1])
        ack = _ack(session, "sara@example.nhs.uk", [closed])
        m2 = _message(session, "tom@example.nhs.uk", T0)
        tom_closed = _application(session, "tom@example.nhs.uk", "SWIG", "accepted", T0, [m2])
        tom_open = _application(session, "tom@example.nhs.uk", "SDIG", "contacted", T0, [m2])
        fresh = _application(session, "una@example.nhs.uk", "SWIG", "withdrawn", T0 + dt.timedelta(days=200), [])
        open_app = _application(session, "vic@example.nhs.uk", "SWIG", "new", T0, [])
    clock = FixedClock(T0 + dt.timedelta(days=364))
    with sessions.begin() as session:
        assert apply_retention(session, settings, clock.now()).applications_anonymised == 0
    clock.advance(days=2)
    with sessions.begin() as session:
        assert apply_retention(session, settings, clock.now()).applications_anonymised == 2
    with sessions() as session:
        for app_id in (closed.id, tom_closed.id):
            app = session.get(Application, app_id)
            assert (app.email, app.name, app.job_title, app.organisation, app.notes) == (None, "", "", "", "")
            assert app.anonymised_at is not None and app.status in ("declined", "accepted")
        msg = session.get(Message, m1.id)
        assert (msg.body_text, msg.body_html, msg.from_address, msg.from_name, msg.subject) == ("", "", "", "", "")
        assert msg.raw is None and msg.attachments == []
        out = session.get(Outbox, ack.id)
        assert out.body == b"" and out.to_address == ""
        # Tom's message also belongs to his open application: it keeps its content.
        assert session.get(Message, m2.id).body_text == "I am Sara Khan" and session.get(Message, m2.id).raw is not None
        assert session.get(Application, tom_open.id).email == "tom@example.nhs.uk"
        assert session.get(Application, fresh.id).email == "una@example.nhs.uk"
        assert session.get(Application, open_app.id).email == "vic@example.nhs.uk"
    with sessions.begin() as session:  # already anonymised: not counted again
        assert apply_retention(session, settings, clock.now()).applications_anonymised == 0


def test_quarantine_goes_after_quarantine_days(env) -> None:
    make, sessions = env
    _, settings = make(quarantine_days=30)
    with sessions.begin() as session:
        _quarantine(session, T0)
        _quarantine(session, T0 + dt.timedelta(days=20))
    with sessions.begin() as session:
        assert apply_retention(session, settings, T0 + dt.timedelta(days=29)).quarantine_purged == 0
        assert apply_retention(session, settings, T0 + dt.timedelta(days=31)).quarantine_purged == 1
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Quarantine)) == 1


def test_every_run_is_audited_with_counts_only(env) -> None:
    make, sessions = env
    _, settings = make()
    with sessions.begin() as session:
        _message(session, "sara@example.nhs.uk", T0)
        _quarantine(session, T0)
    now = T0 + dt.timedelta(days=400)
    with sessions.begin() as session:
        apply_retention(session, settings, now, actor="admin@example.org")
    with sessions() as session:
        event = session.execute(select(AuditEvent).where(AuditEvent.action == "retention.run")).scalar_one()
        assert event.actor == "admin@example.org"
        assert event.details == {"raw_purged": 1, "attachments_purged": 1, "applications_anonymised": 0,
                                 "quarantine_purged": 1, "withdrawals_erased": 0}
        run = session.get(JobRun, "retention")
        assert run.last_result.startswith("raw purged 1")


def test_confirmed_withdrawal_is_erased_only_when_configured(env) -> None:
    make, sessions = env
    with sessions.begin() as session:
        m = _message(session, "sara@example.nhs.uk", T0)
        app = _application(session, "sara@example.nhs.uk", "SWIG", "withdrawn", T0, [m])
        _ack(session, "sara@example.nhs.uk", [app], kind="withdrawal", status="sent")
    now = T0 + dt.timedelta(days=1)
    _, off = make(erase_on_withdrawal=False)
    with sessions.begin() as session:
        assert apply_retention(session, off, now).withdrawals_erased == 0
        assert session.get(Application, app.id) is not None
    _, on = make(erase_on_withdrawal=True)
    with sessions.begin() as session:
        assert plan_retention(session, on, now).withdrawals_erased == 1
        assert apply_retention(session, on, now).withdrawals_erased == 1
    with sessions() as session:
        assert session.get(Application, app.id) is None and session.get(Message, m.id) is None
        assert session.get(Tombstone, m.content_hash) is not None
        erasure = session.execute(select(AuditEvent).where(AuditEvent.action == "subject.erase")).scalar_one()
        assert erasure.details["reason"] == "withdrawal"


def test_withdrawal_awaiting_its_confirmation_is_kept(env) -> None:
    make, sessions = env
    _, on = make(erase_on_withdrawal=True)
    with sessions.begin() as session:
        app = _application(session, "sara@example.nhs.uk", "SWIG", "withdrawn", T0, [])
        _ack(session, "sara@example.nhs.uk", [app], kind="withdrawal", status="pending")
    with sessions.begin() as session:
        assert apply_retention(session, on, T0 + dt.timedelta(days=1)).withdrawals_erased == 0
        assert session.get(Application, app.id) is not None


def test_cli_dry_run_changes_nothing_then_run_applies(env, tmp_path) -> None:
    make, sessions = env
    config, _ = make()
    ancient = dt.datetime(2001, 1, 1, tzinfo=dt.timezone.utc)  # older than any retention period, whenever run
    with sessions.begin() as session:
        _message(session, "sara@example.nhs.uk", ancient)
        _quarantine(session, ancient)
    runner = CliRunner()
    dry = runner.invoke(main, ["--config", str(config), "retention", "run", "--dry-run", "--format", "json"],
                        catch_exceptions=False)
    assert dry.exit_code == 0, dry.output
    counts = {r["what"]: r["count"] for r in json.loads(dry.output)}
    assert counts["raw_purged"] == 1 and counts["quarantine_purged"] == 1
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(RawMessageRow)) == 1
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 0
    real = runner.invoke(main, ["--config", str(config), "retention", "run"], catch_exceptions=False)
    assert real.exit_code == 0 and "raw_purged" in real.output
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(RawMessageRow)) == 0
        assert session.scalar(select(func.count()).select_from(Quarantine)) == 0
    wal = tmp_path / "intake.db-wal"
    assert b"raw Sara Khan" not in (tmp_path / "intake.db").read_bytes() + (wal.read_bytes() if wal.exists() else b"")
