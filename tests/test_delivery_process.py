"""`intake run --once` on a backlog: delivery moves to a second process beside the polls
(intake/delivery_process.py). Real Dovecot, real SMTP sink, the real child process."""

from __future__ import annotations

import re
import sys
from email import message_from_bytes

from click.testing import CliRunner

from intake.cli import main
from intake.delivery_process import DeliveryProcess
from tests.support.config import MailboxSpec, write_config
from tests.support.mail import make_mail


def _backlog(tmp_path, dovecot, mail_account, smtp_server, count: int, **worker):  # type: ignore[no-untyped-def]
    user, _ = mail_account("dproc")
    dovecot.append_many(user, "INBOX", [make_mail(from_=f"Applicant {i} <applicant{i}@example.nhs.uk>", to=user,
                                                  subject=f"Interest {i}") for i in range(count)])
    box = MailboxSpec("swig", user, "pw", port=dovecot.port, group="SWIG", extra={"idle": False})
    return write_config(tmp_path, mailboxes=[box], smtp_port=smtp_server.port,
                        sections={"worker": {"batch_size": 4, "jitter": 0, **worker}})


def _run_once(config) -> str:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(main, ["--config", str(config), "run", "--once"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _acks_by_recipient(smtp_server) -> dict[str, int]:  # type: ignore[no-untyped-def]
    counts: dict[str, int] = {}
    for received in smtp_server.messages:
        for rcpt in received.rcpt_tos:
            counts[rcpt] = counts.get(rcpt, 0) + 1
    return counts


def test_a_backlog_is_delivered_by_the_second_process_each_ack_once(tmp_path, dovecot, mail_account, smtp_server) -> None:
    config = _backlog(tmp_path, dovecot, mail_account, smtp_server, 24, delivery_process_after=1)
    out = _run_once(config)
    assert "outbox: sent 24, retrying 0, failed 0, held 0 (24 sent by the delivery process)" in out
    assert _acks_by_recipient(smtp_server) == {f"applicant{i}@example.nhs.uk": 1 for i in range(24)}
    ids = [message_from_bytes(r.data)["Message-ID"] for r in smtp_server.messages]
    assert len(set(ids)) == 24
    assert "outbox: sent 0" in _run_once(config)  # nothing left over, nothing sent twice
    assert len(smtp_server.messages) == 24


def test_a_small_run_delivers_after_the_polls_without_a_second_process(tmp_path, dovecot, mail_account, smtp_server) -> None:
    config = _backlog(tmp_path, dovecot, mail_account, smtp_server, 3)  # default threshold: 200 acks
    out = _run_once(config)
    assert "outbox: sent 3, retrying 0, failed 0, held 0\n" in out
    assert "delivery process" not in out
    assert len(smtp_server.messages) == 3


def test_when_the_smtp_server_closes_on_the_process_the_worker_delivers_the_rest(tmp_path, dovecot, mail_account,
                                                                                 smtp_server) -> None:
    # 421 closes the connection: the process stops at once; the worker's own drain after the
    # polls opens a new connection and sends the rest. The refused one waits for its retry.
    config = _backlog(tmp_path, dovecot, mail_account, smtp_server, 12, delivery_process_after=1)
    smtp_server.fail_next(421, 1)
    out = _run_once(config)
    match = re.search(r"outbox: sent (\d+), retrying (\d+), failed 0, held 0 \((\d+) sent by the delivery process\)", out)
    assert match, out
    sent, retrying, by_process = (int(g) for g in match.groups())
    assert (sent, retrying) == (11, 1)
    assert by_process < 11  # some were left to the worker
    counts = _acks_by_recipient(smtp_server)
    assert len(counts) == 11 and set(counts.values()) == {1}


def test_a_delivery_process_that_dies_leaves_the_outbox_to_the_worker(tmp_path, dovecot, mail_account, smtp_server,
                                                                      monkeypatch) -> None:
    # A crash cannot be provoked through a real server: the child is replaced by one that
    # reads its input and exits without a report.
    monkeypatch.setattr(DeliveryProcess, "command", (sys.executable, "-c", "import sys; sys.stdin.buffer.read(); sys.exit(3)"))
    config = _backlog(tmp_path, dovecot, mail_account, smtp_server, 8, delivery_process_after=1)
    out = _run_once(config)
    assert "outbox: sent 8, retrying 0, failed 0, held 0\n" in out  # all by the worker itself
    assert "the delivery process ended without a report (exit code 3); delivering here instead" in out
    assert _acks_by_recipient(smtp_server) == {f"applicant{i}@example.nhs.uk": 1 for i in range(8)}


def test_the_service_delivers_a_backlog_from_a_second_process_and_stops_cleanly(tmp_path, dovecot, mail_account,
                                                                                smtp_server) -> None:
    import signal
    import subprocess
    import time

    config = _backlog(tmp_path, dovecot, mail_account, smtp_server, 16, delivery_process_after=1, poll_interval=3600)
    CliRunner().invoke(main, ["--config", str(config), "db", "upgrade"])
    proc = subprocess.Popen([sys.executable, "-m", "intake", "--config", str(config), "run", "--no-web"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(smtp_server.messages) < 16 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "delivering from a second process" in out
    assert re.search(r"delivery process: sent \d+", out), out
    assert _acks_by_recipient(smtp_server) == {f"applicant{i}@example.nhs.uk": 1 for i in range(16)}


def test_a_stop_signal_ends_the_delivery_process_after_its_current_pass(tmp_path, smtp_server) -> None:
    """SIGTERM (the service stopping) mid-pass: the pass's rows are sent and recorded, the
    rest stay pending for the next run, and none is left 'sending'."""
    import datetime as dt
    import os
    import signal
    import time

    from sqlalchemy import func, select

    from intake.config import load_settings
    from intake.db import make_engine, make_sessionmaker, upgrade
    from intake.delivery_process import _PASS
    from intake.models import Outbox

    settings = load_settings(write_config(tmp_path, mailboxes=[], smtp_port=smtp_server.port), env={})
    upgrade(settings["database.url"])
    engine = make_engine(settings["database.url"])
    sessions = make_sessionmaker(engine)
    total = _PASS + 50
    now = dt.datetime.now(dt.timezone.utc)
    with sessions.begin() as session:
        session.add_all(Outbox(to_address=f"a{i}@example.nhs.uk", message_id=f"ack-{i}@example.org", next_attempt_at=now,
                               body=f"Subject: ack {i}\r\n\r\nHello\r\n".encode()) for i in range(total))
    smtp_server.slow_down(0.01)  # a pass of 100 takes a second or more: the signal lands inside the first
    process = DeliveryProcess(settings).start()
    deadline = time.monotonic() + 30
    while not smtp_server.messages and time.monotonic() < deadline:
        time.sleep(0.02)
    assert smtp_server.messages, "the delivery process sent nothing"
    assert process.pid is not None
    os.kill(process.pid, signal.SIGTERM)
    report = process.finish()
    assert report is not None and report.sent == _PASS
    with sessions() as session:
        counts = dict(session.execute(select(Outbox.status, func.count()).group_by(Outbox.status)).all())
    engine.dispose()
    assert counts == {"sent": _PASS, "pending": total - _PASS}
    assert len({r.rcpt_tos[0] for r in smtp_server.messages}) == len(smtp_server.messages) == _PASS
