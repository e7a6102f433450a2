"""Acknowledgements end to end: real Dovecot in, real SMTP out, injected clock."""

from __future__ import annotations

import datetime as dt
import email
import json
from email import policy

import icalendar
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from intake.cli import main
from intake.clock import LONDON, FixedClock
from intake.config import load_settings
from intake.db import make_engine, make_sessionmaker, upgrade
from intake.models import Application, Outbox
from intake.worker import build_ports, prepare, run_once
from tests.support.config import MailboxSpec, write_config
from tests.support.mail import make_mail

from intake.ack.dates import format_when

# The injected clock starts at the real present (IMAP servers will not store an arrival
# time in the future); the groups' dates are placed around it: one past, one upcoming.
NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
_day = (NOW + dt.timedelta(days=30)).astimezone(LONDON).date()
PAST_START = (NOW - dt.timedelta(days=2)).astimezone(LONDON).replace(hour=10, minute=0, second=0, tzinfo=None)
NEXT_START = dt.datetime(_day.year, _day.month, _day.day, 10, 0)
NEXT_END = dt.datetime(_day.year, _day.month, _day.day, 12, 30)
GROUPS = f"""
[[groups]]
code = "SWIG"
display = "SWIG"
name = "Senior Women Influencers Group"
addresses = ["swig@example.org"]
keywords = ["women"]
[[groups.dates]]
start = {PAST_START.isoformat()}
end = {(PAST_START + dt.timedelta(hours=2)).isoformat()}
where = "Leeds"
[[groups.dates]]
start = {NEXT_START.isoformat()}
end = {NEXT_END.isoformat()}
where = "Online (Microsoft Teams)"
[[groups]]
code = "SDIG"
display = "SDIG"
name = "Senior Disability Influencers Group"
addresses = ["sdig@example.org"]
"""
NEXT_WHEN = format_when(NEXT_START.replace(tzinfo=LONDON), NEXT_END.replace(tzinfo=LONDON))
PAST_WHEN = format_when(PAST_START.replace(tzinfo=LONDON), (PAST_START + dt.timedelta(hours=2)).replace(tzinfo=LONDON))


class Env:
    def __init__(self, tmp_path, dovecot, smtp_server, mail_account, **sections):
        self.dovecot, self.smtp = dovecot, smtp_server
        self.user, _ = mail_account("ack")
        self.shared, _ = mail_account("blfi")
        boxes = [MailboxSpec("swig", self.user, "pw", port=dovecot.port, group="SWIG"),
                 MailboxSpec("shared", self.shared, "pw", port=dovecot.port)]
        merged = {"ack": {"enabled": True}, "worker": {"jitter": 0}}
        for key, values in sections.items():
            merged.setdefault(key, {}).update(values)
        self.config = write_config(tmp_path, mailboxes=boxes, smtp_port=smtp_server.port, sections=merged, groups_toml=GROUPS)
        self.settings = load_settings(self.config, env={})
        upgrade(self.settings["database.url"])
        self.sessions = make_sessionmaker(make_engine(self.settings["database.url"]))
        self.clock = FixedClock(NOW)
        prepare(self.settings, self.sessions)

    def deliver(self, box: str = "swig", data: bytes = b"") -> None:
        # Arrival time follows the injected clock (the backlog rule compares the two).
        self.dovecot.append(self.user if box == "swig" else self.shared, "INBOX", data,
                            internal_date=self.clock.now() - dt.timedelta(minutes=1))

    def run(self):
        return run_once(self.settings, self.sessions, build_ports(self.settings, self.clock))

    def outbox(self) -> list[dict]:
        result = CliRunner().invoke(main, ["--config", str(self.config), "outbox", "list", "--format", "json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)


@pytest.fixture
def env(tmp_path, dovecot, smtp_server, mail_account):
    return Env(tmp_path, dovecot, smtp_server, mail_account)


def _parsed(data: bytes):
    return email.message_from_bytes(data, policy=policy.default)


def test_interest_gets_one_correct_acknowledgement(env) -> None:
    env.deliver(data=make_mail(from_="Jane Smith <jane@example.nhs.uk>", to=env.user, message_id="<orig-1@example.nhs.uk>",
                               date=NOW - dt.timedelta(minutes=5)))
    report = env.run()
    assert report.delivery.sent == 1
    [received] = env.smtp.messages
    assert received.rcpt_tos == ["jane@example.nhs.uk"]
    assert received.mail_from == "blfi@example.org"
    msg = _parsed(received.data)
    assert msg.get_content_type() == "multipart/mixed"
    parts = [p.get_content_type() for p in msg.walk()]
    assert parts[:4] == ["multipart/mixed", "multipart/alternative", "text/plain", "text/html"]
    assert "text/calendar" in parts
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["In-Reply-To"] == "<orig-1@example.nhs.uk>"
    assert "<orig-1@example.nhs.uk>" in msg["References"]
    assert msg["Message-ID"].endswith("@example.org>")
    assert msg["X-Intake-Loop"]
    app_ref = env.outbox()[0]
    assert app_ref["status"] == "sent" and app_ref["attempts"] == 1 and app_ref["sent_at"]
    assert msg["Subject"].startswith("Your interest in SWIG [BLFI-")
    text = msg.get_body(("plain",)).get_content()
    assert "Dear Jane Smith" in text
    assert NEXT_WHEN in text                                    # upcoming, British format
    assert PAST_WHEN not in text and "Leeds" not in text        # past at NOW: gone
    assert "please remove me" in " ".join(text.split())          # the privacy notice (wrapped)
    html = msg.get_body(("html",)).get_content()
    assert 'lang="en-GB"' in html and "<img" not in html
    ics = next(p for p in msg.walk() if p.get_content_type() == "text/calendar")
    cal = icalendar.Calendar.from_ical(ics.get_content())
    events = list(cal.walk("VEVENT"))
    assert len(events) == 1
    assert events[0].decoded("dtstart") == NEXT_START.replace(tzinfo=LONDON)
    assert list(cal.walk("VTIMEZONE")) and str(list(cal.walk("VTIMEZONE"))[0]["tzid"]) == "Europe/London"
    # Stable UIDs: the same date has the same UID in a later acknowledgement.
    env.deliver(data=make_mail(from_="Ola <ola@example.nhs.uk>", to=env.user))
    env.run()
    later = _parsed(env.smtp.messages[1].data)
    later_ics = icalendar.Calendar.from_ical(next(p for p in later.walk() if p.get_content_type() == "text/calendar").get_content())
    assert str(list(later_ics.walk("VEVENT"))[0]["uid"]) == str(events[0]["uid"])


def test_two_groups_one_reply(env) -> None:
    env.deliver("shared", make_mail(from_="Sam <sam@example.nhs.uk>", to=env.shared, subject="SWIG and SDIG",
                                    body="I would like to join both SWIG and the SDIG please.\n"))
    env.run()
    assert len(env.smtp.messages) == 1
    msg = _parsed(env.smtp.messages[0].data)
    assert "SWIG and SDIG" in msg["Subject"]
    text = msg.get_body(("plain",)).get_content()
    assert "Senior Women Influencers Group" in text and "Senior Disability Influencers Group" in text
    assert len(env.outbox()[0]["application_ids"]) == 2


@pytest.mark.parametrize("headers, from_", [
    ({"Auto-Submitted": "auto-replied"}, "Jo <jo@example.nhs.uk>"),
    ({"X-Auto-Response-Suppress": "All"}, "Jo <jo@example.nhs.uk>"),
    ({"Precedence": "bulk"}, "Jo <jo@example.nhs.uk>"),
    ({"List-Id": "<staff.example.nhs.uk>"}, "Jo <jo@example.nhs.uk>"),
    ({"X-Spam-Flag": "YES"}, "Jo <jo@example.nhs.uk>"),
    ({"X-Intake-Loop": "example.org"}, "Jo <jo@example.nhs.uk>"),
    ({}, "MAILER-DAEMON <mailer-daemon@example.nhs.uk>"),
    ({}, "Building Leadership for Inclusion <blfi@example.org>"),
    ({}, "No Reply <no-reply@example.nhs.uk>"),
    ({}, "Postmaster <postmaster@example.nhs.uk>"),
])
def test_nothing_automated_or_ours_gets_a_reply(env, headers, from_) -> None:
    env.deliver(data=make_mail(from_=from_, to=env.user, headers=headers))
    env.run()
    assert env.smtp.messages == []
    assert env.outbox() == []


def test_one_ack_per_person_per_group_per_window(env) -> None:
    for i in range(2):
        env.deliver(data=make_mail(from_="Jane <jane@example.nhs.uk>", to=env.user, subject=f"interest {i}"))
        env.run()
    assert len(env.smtp.messages) == 1
    env.clock.advance(hours=25)
    env.deliver(data=make_mail(from_="Jane <jane@example.nhs.uk>", to=env.user, subject="again"))
    env.run()
    assert len(env.smtp.messages) == 2


def test_reply_goes_to_reply_to_and_header_injection_is_harmless(env) -> None:
    hostile = (b"From: =?utf-8?q?Evil=0D=0ABcc=3A_victim=40example=2Eorg?= <pa@example.nhs.uk>\r\n"
               b"Reply-To: =?utf-8?q?Dir=0D=0ABcc=3A_victim2=40example=2Eorg?= <director@example.nhs.uk>\r\n"
               b"To: " + env.user.encode() + b"\r\nSubject: =?utf-8?q?Hi=0D=0ABcc=3A_x=40example=2Eorg?=\r\n"
               b"Message-ID: <inj-1@example.nhs.uk>\r\n\r\nI would like to join.\r\n")
    env.deliver(data=hostile)
    env.run()
    [received] = env.smtp.messages
    assert received.rcpt_tos == ["director@example.nhs.uk"]
    msg = _parsed(received.data)
    assert msg["Bcc"] is None and b"\nBcc:" not in received.data
    # The hostile name survives only as a quoted display name of the one real address.
    assert [a.addr_spec for a in msg["To"].addresses] == ["director@example.nhs.uk"]


def test_hourly_cap_holds_replies(tmp_path, dovecot, smtp_server, mail_account) -> None:
    env = Env(tmp_path, dovecot, smtp_server, mail_account, ack={"enabled": True, "max_per_hour": 1})
    for i in range(3):
        env.deliver(data=make_mail(from_=f"P{i} <p{i}@example.nhs.uk>", to=env.user))
    env.run()
    statuses = sorted(r["status"] for r in env.outbox())
    assert statuses == ["held", "held", "sent"]
    assert len(env.smtp.messages) == 1
    result = CliRunner().invoke(main, ["--config", str(env.config), "outbox", "release", "--all"])
    assert result.exit_code == 0
    env.run()
    assert len(env.smtp.messages) == 3


def test_backlog_found_at_first_connection_is_not_acknowledged(env) -> None:
    env.dovecot.append(env.user, "INBOX", make_mail(from_="Old <old@example.nhs.uk>", to=env.user),
                       internal_date=NOW - dt.timedelta(days=10))
    env.dovecot.append(env.user, "INBOX", make_mail(from_="New <new@example.nhs.uk>", to=env.user),
                       internal_date=NOW - dt.timedelta(hours=1))
    env.run()
    assert [m.rcpt_tos for m in env.smtp.messages] == [["new@example.nhs.uk"]]
    with env.sessions() as s:
        old = s.execute(select(Application).where(Application.email == "old@example.nhs.uk")).scalar_one()
        assert old.group_code == "SWIG"  # stored and routed all the same


def test_smtp_outage_then_recovery_sends_once(env) -> None:
    env.smtp.stop()
    env.deliver(data=make_mail(from_="Jane <jane@example.nhs.uk>", to=env.user))
    report = env.run()
    assert report.delivery.retried == 1
    [row] = env.outbox()
    assert row["status"] == "pending" and row["attempts"] == 1 and "connect" in row["last_error"]
    env.smtp.start()
    env.run()                       # not due yet: backoff
    assert env.smtp.messages == []
    env.clock.advance(seconds=60)
    env.run()
    assert len(env.smtp.messages) == 1
    env.clock.advance(hours=2)
    env.run()
    assert len(env.smtp.messages) == 1
    assert env.outbox()[0]["status"] == "sent"


def test_temporary_failure_retries_and_permanent_failure_is_recorded(env) -> None:
    env.smtp.fail_next(451, 1)
    env.deliver(data=make_mail(from_="A <a@example.nhs.uk>", to=env.user))
    env.run()
    assert env.outbox()[0]["status"] == "pending" and "451" in env.outbox()[0]["last_error"]
    env.clock.advance(minutes=5)
    env.run()
    assert env.outbox()[0]["status"] == "sent"
    env.smtp.fail_next(550, 1, "mailbox unavailable")
    env.deliver(data=make_mail(from_="B <b@example.nhs.uk>", to=env.user))
    env.run()
    row = env.outbox()[1]
    assert row["status"] == "failed" and "550" in row["last_error"] and row["attempts"] == 1
    env.clock.advance(hours=5)
    env.run()
    assert env.outbox()[1]["attempts"] == 1  # not retried forever


def test_bounce_of_our_reply_marks_it_undeliverable(env) -> None:
    env.deliver(data=make_mail(from_="Gone <gone@example.nhs.uk>", to=env.user))
    env.run()
    ours = env.outbox()[0]["message_id"]
    dsn = (f"From: Mail Delivery System <MAILER-DAEMON@example.nhs.uk>\r\nTo: blfi@example.org\r\n"
           f"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-1@example.nhs.uk>\r\n"
           f"Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n--b\r\n"
           f"Content-Type: text/plain\r\n\r\nDelivery failed.\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n"
           f"Final-Recipient: rfc822; gone@example.nhs.uk\r\nAction: failed\r\nStatus: 5.1.1\r\n--b\r\n"
           f"Content-Type: text/rfc822-headers\r\n\r\nMessage-ID: <{ours}>\r\nTo: gone@example.nhs.uk\r\n--b--\r\n").encode()
    env.deliver(data=dsn)
    env.run()
    assert env.outbox()[0]["status"] == "undeliverable"
    with env.sessions() as s:
        app = s.execute(select(Application).where(Application.email == "gone@example.nhs.uk")).scalar_one()
        assert app.status == "undeliverable"
    assert len(env.smtp.messages) == 1  # the bounce itself got no reply


def test_withdrawal_gets_a_short_confirmation(env) -> None:
    env.deliver(data=make_mail(from_="Jane <jane@example.nhs.uk>", to=env.user))
    env.run()
    env.deliver(data=make_mail(from_="Jane <jane@example.nhs.uk>", to=env.user, subject="Please remove me",
                               body="Hello, please remove me from the list. Thanks, Jane\n"))
    env.run()
    assert len(env.smtp.messages) == 2
    confirmation = _parsed(env.smtp.messages[1].data)
    assert confirmation["Subject"].startswith("Your withdrawal")
    assert "withdrawn" in confirmation.get_body(("plain",)).get_content()
    with env.sessions() as s:
        assert s.execute(select(Application.status)).scalar_one() == "withdrawn"


def test_ack_preview_cli(env) -> None:
    result = CliRunner().invoke(main, ["--config", str(env.config), "ack", "preview", "--group", "SDIG", "--name", "Sam"])
    assert result.exit_code == 0, result.output
    assert "Dear Sam" in result.output and "SDIG" in result.output
