"""`intake run`: the scheduler polls each mailbox repeatedly, IDLE picks up new mail at once,
and SIGTERM stops the worker cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from click.testing import CliRunner

from intake.cli import main
from tests.support.config import MailboxSpec, write_config
from tests.support.mail import make_mail


def _stored(config) -> int:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(main, ["--config", str(config), "messages", "list", "--format", "json"])
    return len(json.loads(result.output)) if result.exit_code == 0 else 0


def _wait_for(predicate, timeout: float = 30) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _start(config):  # type: ignore[no-untyped-def]
    return subprocess.Popen([sys.executable, "-m", "intake", "--config", str(config), "run", "--no-web"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _hourly_idle_config(tmp_path, dovecot, mail_account, smtp_server, name: str):  # type: ignore[no-untyped-def]
    """A migrated config with one IDLE mailbox polled only hourly: whatever happens within a
    test's few seconds is IDLE's doing (or the signal's), not the scheduler's."""
    user, _ = mail_account(name)
    config = write_config(tmp_path, mailboxes=[MailboxSpec("swig", user, "pw", port=dovecot.port, group="SWIG")],
                          smtp_port=smtp_server.port, sections={"worker": {"poll_interval": 3600, "jitter": 0}})
    CliRunner().invoke(main, ["--config", str(config), "db", "upgrade"])
    return user, config


def test_scheduled_polls_and_clean_stop(tmp_path, dovecot, mail_account, smtp_server) -> None:
    user, _ = mail_account("sched")
    config = write_config(tmp_path, mailboxes=[MailboxSpec("swig", user, "pw", port=dovecot.port, group="SWIG",
                                                           extra={"idle": False})],
                          smtp_port=smtp_server.port, sections={"worker": {"poll_interval": 1, "jitter": 0}})
    CliRunner().invoke(main, ["--config", str(config), "db", "upgrade"])
    proc = _start(config)
    try:
        dovecot.append(user, "INBOX", make_mail(from_="One <one@example.nhs.uk>", to=user))
        assert _wait_for(lambda: _stored(config) == 1)
        dovecot.append(user, "INBOX", make_mail(from_="Two <two@example.nhs.uk>", to=user))
        assert _wait_for(lambda: _stored(config) == 2)      # polled again by the scheduler
        assert _wait_for(lambda: len(smtp_server.messages) == 2)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "worker stopping" in out


def test_idle_processes_new_mail_without_waiting_for_the_poll(tmp_path, dovecot, mail_account, smtp_server) -> None:
    user, config = _hourly_idle_config(tmp_path, dovecot, mail_account, smtp_server, "idle")
    proc = _start(config)
    try:
        time.sleep(2)  # the first scheduled poll and the IDLE connection
        dovecot.append(user, "INBOX", make_mail(from_="Fast <fast@example.nhs.uk>", to=user))
        # With an hourly poll, only IDLE can have picked this up within the wait.
        assert _wait_for(lambda: len(smtp_server.messages) == 1, timeout=20)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out


def _tgkill(pid: int, tid: int, sig: int) -> bool:
    """Send a signal to one thread of a process (Linux tgkill): what the kernel does when it
    hands a process-wide SIGTERM to a thread other than the main one."""
    import ctypes
    import platform

    number = {"x86_64": 234, "aarch64": 131}[platform.machine()]
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(number, pid, tid, sig) == 0  # False: that thread has just ended


def test_sigterm_delivered_to_another_thread_still_stops_the_worker(tmp_path, dovecot, mail_account, smtp_server) -> None:
    _, config = _hourly_idle_config(tmp_path, dovecot, mail_account, smtp_server, "sigthread")
    proc = _start(config)
    try:
        # Wait for the scheduler and IDLE threads, then signal one of them, not the main thread.
        assert _wait_for(lambda: len(os.listdir(f"/proc/{proc.pid}/task")) >= 3)
        time.sleep(1)
        others = sorted((int(t) for t in os.listdir(f"/proc/{proc.pid}/task") if int(t) != proc.pid), reverse=True)
        assert any(_tgkill(proc.pid, tid, signal.SIGTERM) for tid in others)  # the first live one
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert "worker stopping" in out
