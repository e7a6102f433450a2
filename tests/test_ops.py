"""Health summary and Prometheus metrics, computed from a real database."""

from __future__ import annotations

import datetime as dt

from intake import ops
from intake.config import load_settings
from intake.db import make_engine, make_sessionmaker, upgrade
from intake.models import MailboxState, Message, Outbox
from tests.support.config import MailboxSpec, write_config

NOW = dt.datetime(2027, 1, 5, 12, 0, tzinfo=dt.timezone.utc)


def _setup(tmp_path):
    config = write_config(tmp_path, mailboxes=[MailboxSpec("swig", "swig@example.org", "pw", port=1, group="SWIG"),
                                               MailboxSpec("sdig", "sdig@example.org", "pw", port=1, group="SDIG")])
    settings = load_settings(config, env={})
    upgrade(settings["database.url"])
    return settings, make_sessionmaker(make_engine(settings["database.url"]))


def test_health_flags_a_mailbox_not_polled_recently(tmp_path) -> None:
    settings, sessions = _setup(tmp_path)
    with sessions.begin() as s:
        s.add(MailboxState(name="swig", folder="INBOX", last_success_at=NOW - dt.timedelta(seconds=30)))
        s.add(MailboxState(name="sdig", folder="INBOX", last_success_at=NOW - dt.timedelta(hours=2), last_error="login failed"))
    with sessions() as s:
        ok, detail = ops.health(s, settings, NOW)
    assert not ok
    assert detail["mailboxes"]["swig"]["ok"] and detail["mailboxes"]["swig"]["last_success_age_seconds"] == 30
    assert not detail["mailboxes"]["sdig"]["ok"] and detail["mailboxes"]["sdig"]["last_error"] == "login failed"
    with sessions.begin() as s:
        s.get(MailboxState, "sdig").last_success_at = NOW
    with sessions() as s:
        assert ops.health(s, settings, NOW)[0]


def test_metrics_count_what_is_stored(tmp_path) -> None:
    settings, sessions = _setup(tmp_path)
    with sessions.begin() as s:
        for i, kind in enumerate(["interest", "interest", "bounce"]):
            s.add(Message(message_id_key=f"m{i}", content_hash=f"{i:064d}", mailbox="swig", kind=kind, received_at=NOW))
        s.add(Outbox(to_address="a@example.org", message_id="x@example.org", body=b"", status="sent"))
        s.add(MailboxState(name="swig", folder="INBOX", polls_total=7, poll_errors_total=2, last_poll_seconds=0.25,
                           last_success_at=NOW))
    with sessions() as s:
        text = ops.metrics_text(s)
    assert 'intake_messages_total{kind="interest"} 2' in text
    assert 'intake_messages_total{kind="bounce"} 1' in text
    assert 'intake_outbox_messages{kind="ack",status="sent"} 1' in text
    assert 'intake_poll_errors_total{mailbox="swig"} 2' in text
    assert 'intake_poll_duration_seconds{mailbox="swig"} 0.25' in text
    assert "# TYPE intake_polls_total counter" in text
