"""Coordinators' replies: drafted from templates, threaded, queued in the outbox, audited."""

from __future__ import annotations

import datetime as dt
import email
from email import policy

import icalendar
import pytest
from sqlalchemy import select

from intake.clock import LONDON
from intake.config import load_settings
from intake.db import make_engine, make_sessionmaker, upgrade
from intake.models import Application, AuditEvent, GroupDateRow, Message, Outbox
from intake.replies import ReplyComposer, ReplyError, send_bulk
from tests.support.config import MailboxSpec, write_config

NOW = dt.datetime(2027, 1, 5, 9, 0, tzinfo=dt.timezone.utc)
PAST = dt.datetime(2027, 1, 2, 10, 0, tzinfo=LONDON)
NEXT = dt.datetime(2027, 1, 12, 10, 0, tzinfo=LONDON)


@pytest.fixture
def env(tmp_path):
    config = write_config(tmp_path, mailboxes=[MailboxSpec("swig", "swig@example.org", "pw", port=1, group="SWIG")])
    settings = load_settings(config, env={})
    upgrade(settings["database.url"])
    sessions = make_sessionmaker(make_engine(settings["database.url"]))
    with sessions.begin() as s:
        s.add(GroupDateRow(group_code="SWIG", start=PAST, end=PAST + dt.timedelta(hours=2), where="Leeds", uid="past@intake"))
        s.add(GroupDateRow(group_code="SWIG", start=NEXT, end=NEXT + dt.timedelta(hours=2), where="Online (Microsoft Teams)", uid="next@intake"))
        for i, (name, mail) in enumerate([("Jane Smith", "jane@example.nhs.uk"), ("Ola Nowak", "ola@example.nhs.uk"),
                                          ("Kwame Mensah", "kwame@example.nhs.uk")]):
            app = Application(group_code="SWIG", status="new", name=name, email=mail, received_at=NOW, reference=f"BLFI-00000{i + 1}")
            m = Message(message_id=f"orig-{i}@example.nhs.uk", message_id_key=f"orig-{i}@example.nhs.uk",
                        content_hash=f"{i:064d}", mailbox="swig", kind="interest", received_at=NOW,
                        references=[f"older-{i}@example.nhs.uk"], from_address=mail)
            app.messages.append(m)
            s.add(app)
    return settings, sessions


def _parse(row: Outbox):
    return email.message_from_bytes(row.body, policy=policy.default)


def test_invitation_is_threaded_from_the_group_address_with_an_ics(env) -> None:
    settings, sessions = env
    composer = ReplyComposer(settings)
    with sessions.begin() as s:
        app = s.execute(select(Application).where(Application.email == "jane@example.nhs.uk")).scalar_one()
        draft = composer.draft(s, app, "invitation", coordinator_name="Priya Patel", now=NOW, session_start=NEXT)
        assert "Dear Jane Smith" in draft.body and "Tuesday 12 January 2027, 10:00 to 12:00" in draft.body
        assert "Priya Patel" in draft.body
        row = composer.enqueue(s, app, draft, actor="priya@example.nhs.uk", now=NOW)
        assert app.status == "contacted"
        audit = s.execute(select(AuditEvent).where(AuditEvent.action == "reply.send")).scalar_one()
        assert audit.actor == "priya@example.nhs.uk" and audit.target_id == str(app.id)
    msg = _parse(row)
    assert msg["From"].addresses[0].addr_spec == "swig@example.org"
    assert msg["To"].addresses[0].addr_spec == "jane@example.nhs.uk"
    assert "[BLFI-000001]" in msg["Subject"]
    assert msg["In-Reply-To"] == "<orig-0@example.nhs.uk>"
    assert msg["References"] == "<older-0@example.nhs.uk> <orig-0@example.nhs.uk>"
    assert msg["Auto-Submitted"] is None
    ics = next(p for p in msg.walk() if p.get_content_type() == "text/calendar")
    assert ics.get_param("method") == "REQUEST"
    cal = icalendar.Calendar.from_ical(ics.get_content())
    assert cal["method"] == "REQUEST"
    events = list(cal.walk("VEVENT"))
    assert len(events) == 1 and str(events[0]["uid"]) == "next@intake"
    assert events[0].decoded("dtstart") == NEXT
    assert row.status == "pending" and row.kind == "reply"


def test_a_past_date_cannot_be_offered(env) -> None:
    settings, sessions = env
    with sessions.begin() as s:
        app = s.execute(select(Application).limit(1)).scalar_one()
        with pytest.raises(ReplyError, match="not an upcoming"):
            ReplyComposer(settings).draft(s, app, "invitation", coordinator_name="X", now=NOW, session_start=PAST)


def test_bulk_sends_one_separate_message_each(env) -> None:
    settings, sessions = env
    with sessions.begin() as s:
        apps = list(s.execute(select(Application).order_by(Application.id)).scalars())
        rows = send_bulk(ReplyComposer(settings), s, apps, "more_information", coordinator_name="P", actor="p@x", now=NOW)
    assert len(rows) == 3
    tos = [_parse(r)["To"].addresses for r in rows]
    assert [len(t) for t in tos] == [1, 1, 1]
    assert sorted(t[0].addr_spec for t in tos) == ["jane@example.nhs.uk", "kwame@example.nhs.uk", "ola@example.nhs.uk"]
    assert len({r.message_id for r in rows}) == 3 and len({r.in_reply_to for r in rows}) == 3
    assert rows[2].next_attempt_at > rows[0].next_attempt_at  # spaced out, not a burst


def test_anonymised_application_cannot_be_written_to(env) -> None:
    settings, sessions = env
    with sessions.begin() as s:
        app = s.execute(select(Application).limit(1)).scalar_one()
        app.email = None
        with pytest.raises(ReplyError, match="anonymised"):
            ReplyComposer(settings).draft(s, app, "general", coordinator_name="X", now=NOW)
