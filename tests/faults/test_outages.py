"""Outages and faults around a poll: the database locked or full, the IMAP server gone,
the folder deleted. The worker reports the failure, keeps going, never moves a checkpoint
past unsaved mail, and catches up once the fault is gone."""

from __future__ import annotations

import resource
import sqlite3
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from intake.clock import SystemClock
from intake.config import load_settings
from intake.db import make_engine, make_sessionmaker, upgrade
from intake.models import MailboxState, Message
from intake.worker import build_ports, run_once
from tests.servers.dovecot import Dovecot
from tests.support.config import MailboxSpec, write_config
from tests.support.mail import make_mail


def _setup(tmp_path, server, users, **sections):
    boxes = [MailboxSpec(f"m{i}", u, "pw", port=server.port, group=g) for i, (u, g) in enumerate(users)]
    config = write_config(tmp_path, mailboxes=boxes, sections={"ack": {"enabled": False}, **sections})
    settings = load_settings(config, env={})
    upgrade(settings["database.url"])
    sessions = make_sessionmaker(make_engine(settings["database.url"], busy_timeout=settings["database.busy_timeout"]))
    return config, settings, sessions


def _stored(sessions) -> int:
    with sessions() as s:
        return s.execute(select(func.count()).select_from(Message)).scalar_one()


def _checkpoint(sessions, name: str) -> int:
    with sessions() as s:
        state = s.get(MailboxState, name)
        return state.last_uid if state else 0


@pytest.mark.sqlite_only
def test_locked_database_keeps_checkpoint_and_catches_up(tmp_path, dovecot, mail_account) -> None:
    user, _ = mail_account("lock")
    for i in range(5):
        dovecot.append(user, "INBOX", make_mail(from_=f"L{i} <l{i}@example.nhs.uk>", to=user))
    config, settings, sessions = _setup(tmp_path, dovecot, [(user, "SWIG")], database={"busy_timeout": 1})
    ports = build_ports(settings, SystemClock())
    blocker = sqlite3.connect(tmp_path / "intake.db")
    blocker.execute("BEGIN EXCLUSIVE")          # a second writer holding the lock
    report = run_once(settings, sessions, ports)
    assert report.polls[0].error and "database" in report.polls[0].error
    blocker.rollback()
    blocker.close()
    assert _stored(sessions) == 0 and _checkpoint(sessions, "m0") == 0
    report = run_once(settings, sessions, ports)
    assert report.polls[0].error is None
    assert _stored(sessions) == 5


@pytest.mark.sqlite_only
def test_disk_full_keeps_checkpoint_and_catches_up(tmp_path, dovecot, mail_account) -> None:
    """The database cannot grow (a file-size limit stands in for a full disk)."""
    user, _ = mail_account("full")
    big = "x" * 200_000
    for i in range(10):
        dovecot.append(user, "INBOX", make_mail(from_=f"F{i} <f{i}@example.nhs.uk>", to=user, body=big + str(i)))
    config, settings, sessions = _setup(tmp_path, dovecot, [(user, "SWIG")])
    size = (tmp_path / "intake.db").stat().st_size

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 400_000, size + 400_000))

    cmd = [sys.executable, "-m", "intake", "--config", str(config), "run", "--once"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120, preexec_fn=limit)
    assert first.returncode == 0, first.stderr
    assert "FAILED" in first.stdout and ("full" in first.stdout or "database" in first.stdout)
    assert _stored(sessions) < 10 and _checkpoint(sessions, "m0") <= _stored(sessions)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0
    assert _stored(sessions) == 10


def test_imap_server_down_then_back(tmp_path) -> None:
    server = Dovecot().start()
    try:
        user = server.add_user("down@example.org")
        for i in range(3):
            server.append(user, "INBOX", make_mail(from_=f"D{i} <d{i}@example.nhs.uk>", to=user))
        config, settings, sessions = _setup(tmp_path, server, [(user, "SDIG")])
        ports = build_ports(settings, SystemClock())
        server.stop()
        report = run_once(settings, sessions, ports)
        assert report.polls[0].error and "connect" in report.polls[0].error
        with sessions() as s:
            state = s.get(MailboxState, "m0")
            assert state.consecutive_failures == 1 and state.next_attempt_at is not None
        server.start()
        report = run_once(settings, sessions, ports)
        assert report.polls[0].error is None and _stored(sessions) == 3
    finally:
        server.cleanup()


def test_deleted_folder_is_reported_and_other_mailboxes_go_on(tmp_path, dovecot, mail_account) -> None:
    a, _ = mail_account("fa")
    b, _ = mail_account("fb")
    dovecot.append(a, "Intake", make_mail(from_="A <a@example.nhs.uk>", to=a))
    dovecot.append(b, "INBOX", make_mail(from_="B <b@example.nhs.uk>", to=b))
    boxes = [MailboxSpec("a", a, "pw", port=dovecot.port, group="SWIG", extra={"folder": "Intake"}),
             MailboxSpec("b", b, "pw", port=dovecot.port, group="SDIG")]
    config = write_config(tmp_path, mailboxes=boxes, sections={"ack": {"enabled": False}})
    settings = load_settings(config, env={})
    upgrade(settings["database.url"])
    sessions = make_sessionmaker(make_engine(settings["database.url"]))
    ports = build_ports(settings, SystemClock())
    run_once(settings, sessions, ports)
    dovecot.delete_folder(a, "Intake")
    dovecot.append(b, "INBOX", make_mail(from_="B2 <b2@example.nhs.uk>", to=b))
    report = run_once(settings, sessions, ports)
    errors = {p.mailbox: p.error for p in report.polls}
    assert errors["a"] and "does not exist" in errors["a"]
    assert errors["b"] is None and _stored(sessions) == 3
