"""The intake pipeline end to end against a real Dovecot: `intake run --once` and the store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from intake.cli import main
from intake.db import make_engine, make_sessionmaker
from intake.models import Message, MessageSource, Quarantine
from tests.support.config import MailboxSpec, write_config
from tests.support.inject import routing_fails_on
from tests.support.mail import make_mail

GROUP_BOXES = {"SWIG": "swig", "SDIG": "sdig", "SBAMEIG": "sbameig", "SLGBTIG": "slgbtig"}


@pytest.fixture
def accounts(dovecot, request):
    """Five fresh Dovecot users: one per group mailbox and one shared address."""
    suffix = f"{abs(hash(request.node.name)) % 10**8}"
    users = {}
    for code, box in GROUP_BOXES.items():
        users[code] = f"{box}-{suffix}@example.org"
        dovecot.add_user(users[code], "pw")
    users["shared"] = f"blfi-{suffix}@example.org"
    dovecot.add_user(users["shared"], "pw")
    return users


def _config(tmp_path: Path, dovecot, accounts, smtp_port: int = 9, **kw) -> Path:
    boxes = [MailboxSpec(GROUP_BOXES[code], accounts[code], "pw", port=dovecot.port, group=code) for code in GROUP_BOXES]
    boxes.append(MailboxSpec("shared", accounts["shared"], "pw", port=dovecot.port))
    sections = kw.pop("sections", {})
    sections.setdefault("ack", {}).setdefault("enabled", False)
    return write_config(tmp_path, mailboxes=boxes, smtp_port=smtp_port, sections=sections, **kw)


def _cli(config: Path, *args: str) -> str:
    result = CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _messages(config: Path) -> list[dict]:
    return json.loads(_cli(config, "messages", "list", "--format", "json"))


def _queue(config: Path, *args: str) -> list[dict]:
    return json.loads(_cli(config, "queue", "list", "--format", "json", *args))


def test_routes_interest_from_each_group_mailbox_and_the_shared_one(tmp_path, dovecot, accounts) -> None:
    for code in GROUP_BOXES:
        dovecot.append(accounts[code], "INBOX", make_mail(from_=f"Person {code} <p.{code.lower()}@example.nhs.uk>", to=accounts[code]))
    dovecot.append(accounts["shared"], "INBOX", make_mail(
        from_="Amir Khan <amir.khan@example.nhs.uk>", to=accounts["shared"], subject="SBAMEIG",
        body="Dear team,\n\nI would like to join the Senior BAME Influencers Group.\n\nAmir Khan\n"))
    dovecot.append(accounts["shared"], "INBOX", make_mail(
        from_="Sam Doe <sam.doe@example.nhs.uk>", to=accounts["shared"], subject="Interested",
        body="Hello, I saw the page and would like to be involved.\n"))
    config = _config(tmp_path, dovecot, accounts)
    out = _cli(config, "run", "--once")
    assert "swig: fetched 1, stored 1" in out
    queue = _queue(config)
    by_email = {row["email"]: row for row in queue}
    for code in GROUP_BOXES:
        row = by_email[f"p.{code.lower()}@example.nhs.uk"]
        assert row["group"] == code and row["status"] == "new" and row["message_count"] == 1
        assert row["reference"].startswith("BLFI-")
    assert by_email["amir.khan@example.nhs.uk"]["group"] == "SBAMEIG"
    assert by_email["sam.doe@example.nhs.uk"]["group"] == "TRIAGE"
    messages = _messages(config)
    assert len(messages) == 6
    assert all(m["kind"] == "interest" and m["reason"] for m in messages)
    sam = next(m for m in messages if m["from"] == "sam.doe@example.nhs.uk")
    assert sam["groups"] == ["TRIAGE"] and sam["application_ids"] == [by_email["sam.doe@example.nhs.uk"]["id"]]


def test_second_run_stores_nothing_twice(tmp_path, dovecot, accounts) -> None:
    for i in range(5):
        dovecot.append(accounts["SWIG"], "INBOX", make_mail(from_=f"P{i} <p{i}@example.nhs.uk>", to=accounts["SWIG"]))
    config = _config(tmp_path, dovecot, accounts)
    _cli(config, "run", "--once")
    first = _messages(config)
    out = _cli(config, "run", "--once")
    assert "swig: fetched 0, stored 0" in out
    assert _messages(config) == first
    assert len(_queue(config)) == 5


def test_uidvalidity_change_rereads_without_duplicates(tmp_path, dovecot, accounts) -> None:
    for i in range(3):
        dovecot.append(accounts["SDIG"], "INBOX", make_mail(from_=f"P{i} <q{i}@example.nhs.uk>", to=accounts["SDIG"]))
    config = _config(tmp_path, dovecot, accounts)
    _cli(config, "run", "--once")
    before = dovecot.uidvalidity(accounts["SDIG"], "INBOX")
    dovecot.recreate_folder_with_new_uidvalidity(accounts["SDIG"], "INBOX")
    assert dovecot.uidvalidity(accounts["SDIG"], "INBOX") != before
    dovecot.append(accounts["SDIG"], "INBOX", make_mail(from_="New <new@example.nhs.uk>", to=accounts["SDIG"]))
    out = _cli(config, "run", "--once")
    assert "sdig: fetched" in out
    emails = sorted(m["from"] for m in _messages(config))
    assert emails == ["new@example.nhs.uk", "q0@example.nhs.uk", "q1@example.nhs.uk", "q2@example.nhs.uk"]


def test_same_message_in_two_mailboxes_is_stored_once(tmp_path, dovecot, accounts) -> None:
    data = make_mail(from_="Both <both@example.nhs.uk>", to=f"{accounts['SWIG']}, {accounts['SDIG']}",
                     message_id="<same-1@example.nhs.uk>")
    dovecot.append(accounts["SWIG"], "INBOX", data)
    # A second delivery of the same message differs in its trace headers.
    dovecot.append(accounts["SDIG"], "INBOX", b"Delivered-To: " + accounts["SDIG"].encode() + b"\r\n" + data)
    config = _config(tmp_path, dovecot, accounts)
    _cli(config, "run", "--once")
    messages = _messages(config)
    assert len(messages) == 1
    assert sorted(messages[0]["groups"]) == ["SDIG", "SWIG"]
    with _sessions(config)() as s:
        assert s.execute(select(func.count()).select_from(MessageSource)).scalar_one() == 2


def test_one_failing_mailbox_does_not_stop_the_others(tmp_path, dovecot, accounts) -> None:
    dovecot.append(accounts["SBAMEIG"], "INBOX", make_mail(to=accounts["SBAMEIG"]))
    boxes = [MailboxSpec("broken", accounts["SWIG"], "wrong-password", port=dovecot.port, group="SWIG"),
             MailboxSpec("missing", accounts["SDIG"], "pw", port=dovecot.port, group="SDIG", extra={"folder": "NoSuchFolder"}),
             MailboxSpec("sbameig", accounts["SBAMEIG"], "pw", port=dovecot.port, group="SBAMEIG")]
    config = write_config(tmp_path, mailboxes=boxes, sections={"ack": {"enabled": False}})
    out = _cli(config, "run", "--once")
    assert "broken: FAILED" in out and "missing: FAILED" in out
    assert "sbameig: fetched 1, stored 1" in out
    assert [r["group"] for r in _queue(config)] == ["SBAMEIG"]
    check = CliRunner().invoke(main, ["--config", str(config), "check"])
    assert check.exit_code == 1
    assert "broken" in check.output and "FAIL" in check.output


def test_move_to_processed_folder_after_commit(tmp_path, dovecot, accounts) -> None:
    for i in range(3):
        dovecot.append(accounts["SWIG"], "INBOX", make_mail(from_=f"M{i} <m{i}@example.nhs.uk>", to=accounts["SWIG"]))
    boxes = [MailboxSpec("swig", accounts["SWIG"], "pw", port=dovecot.port, group="SWIG", extra={"move_to": "Processed"})]
    config = write_config(tmp_path, mailboxes=boxes, sections={"ack": {"enabled": False}})
    _cli(config, "run", "--once")
    assert dovecot.uids(accounts["SWIG"], "INBOX") == []
    assert len(dovecot.uids(accounts["SWIG"], "Processed")) == 3
    assert len(_messages(config)) == 3


def test_internal_error_quarantines_one_message_and_goes_on(tmp_path, dovecot, accounts, monkeypatch) -> None:
    """A bug in our own code on one message (a fault no server can produce: injected)."""
    routing_fails_on(monkeypatch, lambda subject: "boom" in subject)
    dovecot.append(accounts["SWIG"], "INBOX", make_mail(from_="A <a@example.nhs.uk>", to=accounts["SWIG"], subject="boom"))
    dovecot.append(accounts["SWIG"], "INBOX", make_mail(from_="B <b@example.nhs.uk>", to=accounts["SWIG"]))
    config = _config(tmp_path, dovecot, accounts)
    out = _cli(config, "run", "--once")
    assert "quarantined 1" in out
    assert [m["from"] for m in _messages(config)] == ["b@example.nhs.uk"]
    with _sessions(config)() as s:
        q = s.execute(select(Quarantine)).scalar_one()
        assert "routing exploded" in q.reason and b"boom" in q.data
    # And it is not retried on every poll.
    assert "quarantined 0" in _cli(config, "run", "--once")


def test_kill_mid_batch_then_rerun_loses_and_duplicates_nothing(tmp_path, dovecot, accounts) -> None:
    n = 300
    dovecot.append_many(accounts["SWIG"], "INBOX", [
        make_mail(from_=f"K{i} <k{i}@example.nhs.uk>", to=accounts["SWIG"], message_id=f"<kill-{i}@example.nhs.uk>")
        for i in range(n)])
    config = _config(tmp_path, dovecot, accounts, sections={"worker": {"batch_size": 20}, "ack": {"enabled": False}})
    cmd = [sys.executable, "-m", "intake", "--config", str(config), "run", "--once"]
    sessions = _sessions(config)
    _cli(config, "db", "upgrade")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_at = _kill_when_some_stored(proc, sessions, minimum=1)
    assert killed_at < n, "the worker finished before it could be killed; make the batch larger"
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    with sessions() as s:
        ids = list(s.execute(select(Message.message_id)).scalars())
    assert len(ids) == n and len(set(ids)) == n


def _sessions(config: Path):
    from intake.config import load_settings

    return make_sessionmaker(make_engine(load_settings(config, env={})["database.url"]))


def _kill_when_some_stored(proc: subprocess.Popen, sessions, minimum: int) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with sessions() as s:
                count = s.execute(select(func.count()).select_from(Message)).scalar_one()
        except Exception:  # the schema may not exist yet, or the database is busy: look again
            count = 0
        if count >= minimum:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return count
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    return 10**9
