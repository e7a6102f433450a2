"""A poll that finds a backlog parses it in a second process, one batch ahead of storing it
(intake/parse_process.py). Real Dovecot, a real child process; the faults are child
processes that misbehave (a real server cannot make our own child do that)."""

from __future__ import annotations

import functools
import hashlib
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

import intake.pipeline as pipeline
from intake.cli import main
from intake.config import load_settings
from intake.db import make_engine, make_sessionmaker
from intake.models import Application, Message, Outbox, Quarantine
from intake.parse_process import ParseAhead
from intake.parsing import quick_headers
from tests.support.config import MailboxSpec, write_config
from tests.support.inject import routing_fails_on
from tests.support.mail import make_mail

MAIL = Path(__file__).parent / "mail"


def _with_attachment(i: int, size: int) -> bytes:
    return make_mail(from_=f"=?utf-8?q?Zo=C3=AB_=C3=93_Briain_{i}?= <zoe.{i}@example.nhs.uk>",
                     subject=f"Expression of interest {i} with my CV", message_id=f"<cv-{i}@example.nhs.uk>",
                     body=f"Hello,\n\nI would like to join. My CV is attached.\n\nZoë {i}\n",
                     html=f"<p>Hello,</p><p>I would like to <b>join</b>.</p><p>Zoë {i}</p>",
                     attachment=(f"cv-{i}.pdf", bytes(range(256)) * (size // 256)))


@functools.cache  # the same bytes for every run of a test: they are compared by content hash
def _corpus() -> tuple[list[bytes], list[bytes]]:
    """Mail for the SWIG mailbox (every sample in tests/mail but the empty one, generated interest, an
    attachment, a message larger than a poll batch) and for the SDIG mailbox (some of the
    same messages, which add an SDIG application to the stored ones, and new ones)."""
    samples = [p.read_bytes() for p in sorted(MAIL.rglob("*.eml"))]
    samples = [data for data in samples if data]  # an IMAP server stores no empty message
    interest = [make_mail(from_=f"Person {i} <person.{i}@example.nhs.uk>", subject=f"Joining {i}",
                          message_id=f"<pp-{i}@example.nhs.uk>") for i in range(12)]
    big = _with_attachment(99, pipeline.BATCH_BYTES + 512 * 1024)
    swig = samples + interest + [_with_attachment(1, 120_000), big, interest[0]]
    sdig = interest[:3] + [make_mail(from_=f"New {i} <new.{i}@example.nhs.uk>", to="sdig@example.org",
                                     message_id=f"<sd-{i}@example.nhs.uk>") for i in range(2)]
    return swig, sdig


def _config(tmp_path: Path, dovecot, mail_account, parse_process_after: int) -> Path:
    (swig, _), (sdig, _) = mail_account("swig-pp"), mail_account("sdig-pp")
    mails_swig, mails_sdig = _corpus()
    dovecot.append_many(swig, "INBOX", mails_swig)
    dovecot.append_many(sdig, "INBOX", mails_sdig)
    boxes = [MailboxSpec("swig", swig, "pw", port=dovecot.port, group="SWIG"),
             MailboxSpec("sdig", sdig, "pw", port=dovecot.port, group="SDIG")]
    return write_config(tmp_path, mailboxes=boxes, smtp_port=9,
                        sections={"ack": {"enabled": True},
                                  "worker": {"batch_size": 5, "parse_process_after": parse_process_after,
                                             "delivery_process_after": 0}})


def _run(config: Path) -> str:
    result = CliRunner().invoke(main, ["--config", str(config), "run", "--once"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _counts(output: str) -> list[str]:
    """The mailboxes' lines of `intake run --once` (fetched, stored, duplicates, ...)."""
    return [line for line in output.splitlines() if line.startswith(("swig:", "sdig:"))]


def _stored(config: Path) -> dict[str, object]:
    """What a run stored, without what differs between two runs (times, ids of ours)."""
    sessions = make_sessionmaker(make_engine(load_settings(config, env={})["database.url"]))
    with sessions() as s:
        messages = sorted(
            (m.content_hash, m.kind, m.reason, tuple(m.groups or ()), m.from_address, m.from_name, m.reply_to,
             m.subject, m.body_text, m.body_html, tuple(m.to_addresses or ()), m.size, m.oversize, m.mailbox,
             tuple(sorted((a.filename, a.content_type, a.size, hashlib.sha256(a.data or b"").hexdigest())
                          for a in m.attachments)))
            for m in s.execute(select(Message)).scalars())
        applications = sorted((a.reference, a.email, a.name, a.group_code, a.needs_attention, a.organisation)
                              for a in s.execute(select(Application)).scalars())
        outbox = sorted((o.to_address, o.subject, tuple(o.group_codes), o.kind) for o in s.execute(select(Outbox)).scalars())
        quarantine = sorted((q.content_hash, q.reason.splitlines()[0]) for q in s.execute(select(Quarantine)).scalars())
    return {"messages": messages, "applications": applications, "outbox": outbox, "quarantine": quarantine}


@pytest.fixture
def handed_over(monkeypatch) -> dict[str, list[int]]:
    """What the worker gave the parse process (bytes per batch) and got back (results per batch)."""
    seen: dict[str, list[int]] = {"submitted": [], "collected": []}
    submit, collect = ParseAhead.submit, ParseAhead.collect

    def spy_submit(self, batch):  # type: ignore[no-untyped-def]
        seen["submitted"].append(sum(len(d) for d in batch))
        return submit(self, batch)

    def spy_collect(self):  # type: ignore[no-untyped-def]
        results = collect(self)
        if results is not None:
            seen["collected"].append(len(results))
        return results

    monkeypatch.setattr(ParseAhead, "submit", spy_submit)
    monkeypatch.setattr(ParseAhead, "collect", spy_collect)
    return seen


def test_a_backlog_parsed_ahead_is_stored_exactly_as_one_parsed_in_the_worker(tmp_path, dovecot, mail_account,
                                                                                handed_over, monkeypatch) -> None:
    looked_here = []  # the messages whose quick header look the worker made itself
    monkeypatch.setattr(pipeline, "quick_headers", lambda data: looked_here.append(data) or quick_headers(data))
    inline = _config(tmp_path / "inline", dovecot, mail_account, parse_process_after=0)
    out_inline = _run(inline)
    assert handed_over == {"submitted": [], "collected": []}
    swig, sdig = _corpus()
    assert len(looked_here) == len(swig) + len(sdig)

    looked_here.clear()
    ahead = _config(tmp_path / "ahead", dovecot, mail_account, parse_process_after=1)
    out_ahead = _run(ahead)
    # Every batch went to the process and came back but each mailbox's first (read in the
    # worker while the process starts) and the one message larger than a batch.
    read_here = 2 * 5 + 1
    assert sum(handed_over["collected"]) == len(swig) + len(sdig) - read_here
    # The worker used the process's header looks for its bulk lookups, not its own.
    assert len(looked_here) == read_here
    assert max(handed_over["submitted"]) <= pipeline.BATCH_BYTES
    assert len(handed_over["submitted"]) >= 10  # many batches, so parsing ran ahead of storing

    stored_inline, stored_ahead = _stored(inline), _stored(ahead)
    assert stored_ahead == stored_inline
    assert _counts(out_ahead) == _counts(out_inline)
    # The comparison covers what it should: every kind of sample, the big attachment, the
    # unparseable, and SDIG applications added to messages stored from the SWIG mailbox.
    kinds = {m[1] for m in stored_ahead["messages"]}  # type: ignore[union-attr]
    assert {"interest", "bounce", "auto_reply", "unparseable"} <= kinds
    assert any(att[2] > pipeline.BATCH_BYTES for m in stored_ahead["messages"] for att in m[-1])  # type: ignore[union-attr]
    assert {a[1] for a in stored_ahead["applications"] if a[3] == "SDIG"} >= {  # type: ignore[union-attr]
        "person.0@example.nhs.uk", "new.0@example.nhs.uk"}
    assert "stored 0" in _run(ahead)  # and a second run stores nothing again


# A child that answers its first batch properly, then dies; and one that answers every batch
# with a result too few. Both are the real module's own frames.
_DIES_AFTER_ONE = """
import os, sys
from intake import parse_process as p
stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
max_bytes = p._read_frame(stdin)
p._write_frame(stdout, [(p.quick_headers(d), p.parse_or_reason(d, max_bytes=max_bytes)) for d in p._read_frame(stdin)])
os._exit(3)
"""
_ANSWERS_ONE_SHORT = """
import sys
from intake import parse_process as p
stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
max_bytes = p._read_frame(stdin)
while True:
    try:
        batch = p._read_frame(stdin)
    except EOFError:
        break
    p._write_frame(stdout, [(p.quick_headers(d), p.parse_or_reason(d, max_bytes=max_bytes)) for d in batch][1:])
"""


@pytest.mark.parametrize("child", [_DIES_AFTER_ONE, _ANSWERS_ONE_SHORT, "import sys; sys.exit(0)"],
                         ids=["dies after one batch", "answers a result short", "exits at once"])
def test_a_failing_parse_process_leaves_the_parsing_to_the_worker(tmp_path, dovecot, mail_account, handed_over,
                                                                  monkeypatch, child) -> None:
    monkeypatch.setattr(ParseAhead, "command", (sys.executable, "-c", child))
    reference = _config(tmp_path / "inline", dovecot, mail_account, parse_process_after=0)
    _run(reference)
    config = _config(tmp_path / "ahead", dovecot, mail_account, parse_process_after=1)
    out = _run(config)  # its log lines included
    assert _stored(config) == _stored(reference)  # nothing lost, nothing stored twice
    assert sum(handed_over["collected"]) <= 5 * 2  # at most its first batch in each mailbox
    assert [line for line in out.splitlines() if "WARNING" in line and "the parse process" in line
            and "failed" in line and "parsing in the worker from here on" in line]
    assert "stored 0" in _run(config)


def test_a_batch_read_again_carefully_uses_what_the_process_parsed(tmp_path, dovecot, mail_account, handed_over,
                                                                   monkeypatch) -> None:
    """One message of a batch fails in our code (injected): the batch is rolled back and
    stored again message by message, and only that one is quarantined."""
    routing_fails_on(monkeypatch, lambda subject: subject == "Joining 3")
    reference = _config(tmp_path / "inline", dovecot, mail_account, parse_process_after=0)
    _run(reference)
    config = _config(tmp_path / "ahead", dovecot, mail_account, parse_process_after=1)
    _run(config)
    stored = _stored(config)
    assert stored == _stored(reference)
    assert [reason for _, reason in stored["quarantine"] if "routing exploded" in reason]  # type: ignore[union-attr]
