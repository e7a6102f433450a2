"""Acknowledger.enqueue -> outbox row -> delivery job -> what a real SMTP server received.

Rows are built directly in a real SQLite database; the clock is injected (FixedClock), and
the groups' dates are placed around it (one past, two upcoming, one group with none)."""

from __future__ import annotations

import datetime as dt
import email
import hashlib
import itertools
import logging
import os
import shutil
import time
from email import policy
from pathlib import Path

import icalendar
import jinja2
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from intake.ack import LOOP_HEADER, Acknowledger, seed_dates
from intake.cli import main
from intake.clock import LONDON, FixedClock
from intake.config import load_settings
from intake.db import make_engine, make_sessionmaker, upgrade
from intake.delivery import deliver_due
from intake.domain import Address, InboundMessage, Kind, Verdict
from intake.errors import ConfigError
from intake.models import Application, Message, Outbox
from intake.parsing import parse
from tests.support.config import REPO, MailboxSpec, write_config
from tests.support.mail import make_mail

NOW = dt.datetime(2027, 1, 20, 9, 0, tzinfo=dt.timezone.utc)
GROUPS = """
[[groups]]
code = "SWIG"
display = "SWIG"
name = "Senior Women Influencers Group"
addresses = ["swig@example.org"]
[[groups.dates]]
start = 2027-03-09T10:00:00
end = 2027-03-09T12:30:00
where = "Skipton House, London"
[[groups.dates]]
start = 2027-01-12T10:00:00
end = 2027-01-12T12:00:00
where = "Past Place"
[[groups.dates]]
start = 2027-06-01T14:00:00
end = 2027-06-01T16:00:00
where = "Online (Microsoft Teams)"
[[groups]]
code = "SDIG"
display = "SDIG"
name = "Senior Disability Influencers Group"
addresses = ["sdig@example.org"]
[[groups.dates]]
start = 2027-02-02T10:00:00
end = 2027-02-02T12:00:00
where = "Quarry House, Leeds"
[[groups]]
code = "SLGBTIG"
display = "SLGBT+IG"
name = "Senior LGBT+ Influencers Group"
addresses = ["slgbtig@example.org"]
"""
_refs = itertools.count(1)


class Env:
    def __init__(self, tmp_path: Path, smtp_server, ack: dict | None = None, mailbox: dict | None = None,  # type: ignore[no-untyped-def]
                 templates_dir: Path | None = None):
        boxes = [MailboxSpec("swig", "swig@example.org", "pw", port=1, group="SWIG", extra=mailbox or {})]
        self.config = write_config(tmp_path, mailboxes=boxes, smtp_port=smtp_server.port, groups_toml=GROUPS,
                                   sections={"ack": {"enabled": True, **(ack or {})},
                                             "smtp": {"message_id_domain": "intake.example.org"}})
        self.settings = load_settings(self.config, env={})
        upgrade(self.settings["database.url"])
        self.sessions = make_sessionmaker(make_engine(self.settings["database.url"]))
        self.clock = FixedClock(NOW)
        self.smtp = smtp_server
        with self.sessions.begin() as s:
            seed_dates(s, self.settings.groups)
        self.ack = Acknowledger(self.settings, self.clock, templates_dir)
        self.mailbox = self.settings.mailboxes[0]

    def enqueue(self, inbound: InboundMessage, groups: tuple[str, ...] = ("SWIG",), kind: Kind = Kind.INTEREST,
                name: str = "", received_at: dt.datetime | None = None,
                first_connected: dt.datetime | None = None) -> tuple[int | None, bool, str]:
        with self.sessions.begin() as s:
            message = Message(message_id=inbound.message_id, message_id_key=inbound.message_id or str(next(_refs)),
                              content_hash=hashlib.sha256(f"{inbound.message_id}{next(_refs)}".encode()).hexdigest(),
                              mailbox="swig", kind=kind.value, received_at=received_at or self.clock.now())
            s.add(message)
            sender = inbound.reply_to or inbound.from_
            email_ = sender.email if sender else None
            apps = [s.execute(select(Application).where(Application.email == email_, Application.group_code == g)).scalar_one_or_none()
                    or Application(reference=f"BLFI-{next(_refs):06d}", group_code=g, name=name, email=email_,
                                   received_at=self.clock.now()) for g in groups]
            s.add_all(apps)
            s.flush()
            row = self.ack.enqueue(s, inbound=inbound, message=message, verdict=Verdict(kind, "test"),
                                   applications=apps, mailbox=self.mailbox, mailbox_first_connected_at=first_connected)
            s.flush()
            return (row.id if row else None), message.acknowledge, message.ack_skip_reason

    def deliver(self):  # type: ignore[no-untyped-def]
        return deliver_due(self.sessions, self.settings, self.clock)

    def received(self) -> list[email.message.EmailMessage]:
        return [email.message_from_bytes(m.data, policy=policy.default) for m in self.smtp.messages]


@pytest.fixture
def env(tmp_path, smtp_server):
    return Env(tmp_path, smtp_server)


def inbound(from_: str = "Jane Smith <jane@example.nhs.uk>", **kw) -> InboundMessage:  # type: ignore[no-untyped-def]
    return parse(make_mail(from_=from_, **kw))


def calendar_of(msg: email.message.EmailMessage) -> icalendar.Calendar:
    part = next(p for p in msg.walk() if p.get_content_type() == "text/calendar")
    assert part.get_param("method") == "PUBLISH" and part.get_filename() == "dates.ics"
    return icalendar.Calendar.from_ical(part.get_content())


def test_acknowledgement_as_received_by_the_server(env) -> None:
    original = inbound(message_id="<orig-1@example.nhs.uk>", headers={"References": "<thread-0@example.nhs.uk>"})
    row_id, acknowledge, reason = env.enqueue(original, name="Jane Smith")
    assert row_id is not None and acknowledge and reason == ""
    assert env.deliver().sent == 1
    [received] = env.smtp.messages
    assert received.rcpt_tos == ["jane@example.nhs.uk"] and received.mail_from == "blfi@example.org"
    [msg] = env.received()
    assert [p.get_content_type() for p in msg.walk()] == [
        "multipart/mixed", "multipart/alternative", "text/plain", "text/html", "text/calendar"]
    assert msg["Auto-Submitted"] == "auto-replied" and msg["X-Auto-Response-Suppress"] == "All"
    assert msg[LOOP_HEADER] == "intake.example.org"
    assert msg["In-Reply-To"] == "<orig-1@example.nhs.uk>"
    assert msg["References"] == "<thread-0@example.nhs.uk> <orig-1@example.nhs.uk>"
    assert msg["Message-ID"].startswith("<ack-") and msg["Message-ID"].endswith("@intake.example.org>")
    with env.sessions() as s:
        row = s.get(Outbox, row_id)
        reference = row.applications[0].reference
        assert f"<{row.message_id}>" == msg["Message-ID"] and row.in_reply_to == "orig-1@example.nhs.uk"
    assert msg["Subject"] == f"Your interest in SWIG [{reference}]"
    assert msg["To"].addresses[0].addr_spec == "jane@example.nhs.uk"

    text = msg.get_body(("plain",)).get_content()
    assert text.startswith("Dear Jane Smith,")
    assert "Senior Women Influencers Group" in text and reference in text
    # Only dates still to come at send time, soonest first, the British way, with where.
    march = "Tuesday 9 March 2027, 10:00 to 12:30, Skipton House, London"
    june = "Tuesday 1 June 2027, 14:00 to 16:00, Online (Microsoft Teams)"
    assert march in text and june in text and text.index(march) < text.index(june)
    assert "Past Place" not in text and "12 January" not in text
    assert "blfi@example.org" in text                              # the coordinators' contact address
    assert "please remove me" in " ".join(text.split())             # the privacy notice, how to withdraw
    html = msg.get_body(("html",)).get_content()
    assert '<html lang="en-GB">' in html and "<img" not in html and "<h2" in html and "<li>" in html
    assert "Skipton House, London" in html and "Past Place" not in html

    cal = calendar_of(msg)
    events = sorted(cal.walk("VEVENT"), key=lambda e: e.decoded("dtstart"))
    assert [e.decoded("dtstart") for e in events] == [dt.datetime(2027, 3, 9, 10, 0, tzinfo=LONDON),
                                                      dt.datetime(2027, 6, 1, 14, 0, tzinfo=LONDON)]
    assert [str(e["location"]) for e in events] == ["Skipton House, London", "Online (Microsoft Teams)"]
    assert [str(tz["tzid"]) for tz in cal.walk("VTIMEZONE")] == ["Europe/London"]
    assert "DTSTART;TZID=Europe/London:20270309T100000" in next(
        p for p in msg.walk() if p.get_content_type() == "text/calendar").get_content()

    # A later acknowledgement lists the same dates under the same UIDs (stable), and a date
    # that has since passed is gone from both the text and the calendar.
    env.clock.advance(days=60)
    env.enqueue(inbound(from_="Ola <ola@example.nhs.uk>"))
    env.deliver()
    later = env.received()[1]
    later_events = list(calendar_of(later).walk("VEVENT"))
    assert [str(e["uid"]) for e in later_events] == [str(events[1]["uid"])]
    assert march not in later.get_body(("plain",)).get_content()


def test_two_groups_get_one_reply_covering_both(env) -> None:
    row_id, _, _ = env.enqueue(inbound(), groups=("SDIG", "SWIG"), name="Sam")
    env.deliver()
    [msg] = env.received()
    with env.sessions() as s:
        row = s.get(Outbox, row_id)
        refs = {a.group_code: a.reference for a in row.applications}
        assert sorted(row.group_codes) == ["SDIG", "SWIG"] and len(row.applications) == 2
    assert msg["Subject"] == f"Your interest in SWIG and SDIG [{refs['SWIG']}] [{refs['SDIG']}]"
    text = msg.get_body(("plain",)).get_content()
    assert "Senior Women Influencers Group" in text and "Senior Disability Influencers Group" in text
    assert refs["SWIG"] in text and refs["SDIG"] in text and text.count("Dear Sam") == 1
    assert "Quarry House, Leeds" in text
    assert len(list(calendar_of(msg).walk("VEVENT"))) == 3


def test_no_upcoming_dates_says_they_will_follow_and_attaches_nothing(env) -> None:
    env.enqueue(inbound(from_="Alex <alex@example.nhs.uk>"), groups=("SLGBTIG",))
    env.deliver()
    [msg] = env.received()
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["Subject"].startswith("Your interest in SLGBT+IG [BLFI-")
    text = " ".join(msg.get_body(("plain",)).get_content().split())
    assert "Senior LGBT+ Influencers Group" in text
    assert "have not been set yet. We will send them to you as soon as they are" in text


def test_triage_says_we_will_route_it_and_neutral_greeting(env) -> None:
    env.enqueue(inbound(from_="someone@example.nhs.uk"), groups=("TRIAGE",))
    env.deliver()
    [msg] = env.received()
    assert msg["Subject"].startswith("We have received your message [BLFI-")
    text = msg.get_body(("plain",)).get_content()
    assert text.startswith("Hello,") and "Dear" not in text
    assert "reaches the right group" in " ".join(text.split())
    assert msg.get_content_type() == "multipart/alternative"   # no dates for triage


def test_withdrawal_gets_a_short_confirmation(env) -> None:
    env.enqueue(inbound(subject="please remove me"), kind=Kind.WITHDRAWAL, name="Jane")
    env.deliver()
    [msg] = env.received()
    assert msg["Subject"].startswith("Your withdrawal [BLFI-")
    text = msg.get_body(("plain",)).get_content()
    assert "withdrawn" in text and "SWIG" in text and "Upcoming dates" not in text
    assert msg.get_content_type() == "multipart/alternative"
    assert len(text) < 800


def test_withdrawal_we_cannot_match_promises_nothing_false(env) -> None:
    row_id, acknowledge, _ = env.enqueue(inbound(subject="remove me"), groups=(), kind=Kind.WITHDRAWAL)
    assert row_id is not None and acknowledge
    env.deliver()
    text = " ".join(env.received()[0].get_body(("plain",)).get_content().split())
    assert "A coordinator will find your application" in text and "marked as withdrawn" not in text


def test_reply_goes_to_reply_to(env) -> None:
    env.enqueue(inbound(from_="PA <pa@example.nhs.uk>", headers={"Reply-To": "Director <director@example.nhs.uk>"}))
    env.deliver()
    assert [m.rcpt_tos for m in env.smtp.messages] == [["director@example.nhs.uk"]]


def test_crlf_in_applicant_input_never_makes_a_header(env) -> None:
    # Built by hand, bypassing the parser's own cleaning: the composer must defend itself.
    hostile = InboundMessage(
        message_id="x@example.nhs.uk>\r\nBcc: evil1@example.org", subject="Hi\r\nBcc: evil2@example.org",
        from_=Address("jane@example.nhs.uk", "Jane\r\nBcc: evil3@example.org"), reply_to=None, to=(), cc=(),
        delivered_to=(), date=None, in_reply_to="", references=("r@example.nhs.uk>\nBcc: evil4@example.org",),
        headers=(), text="I would like to join", html="")
    env.enqueue(hostile, name="Jane\r\nBcc: evil5@example.org\r\n\r\n<b>body</b>")
    env.deliver()
    [received] = env.smtp.messages
    assert received.rcpt_tos == ["jane@example.nhs.uk"]
    msg = env.received()[0]
    assert msg["Bcc"] is None and b"\nBcc:" not in received.data and b"\rBcc:" not in received.data
    assert [a.addr_spec for a in msg["To"].addresses] == ["jane@example.nhs.uk"]
    header_names = {k.lower() for k in msg.keys()}
    assert header_names <= {"content-type", "mime-version", "from", "to", "subject", "date", "message-id", "in-reply-to",
                            "references", "auto-submitted", "x-auto-response-suppress", "precedence", LOOP_HEADER.lower()}
    html = msg.get_body(("html",)).get_content()
    assert "<b>body</b>" not in html and "&lt;b&gt;body&lt;/b&gt;" in html   # autoescaped


@pytest.mark.parametrize("kind", [k for k in Kind if k not in (Kind.INTEREST, Kind.WITHDRAWAL)])
def test_automated_kinds_get_no_row(env, kind) -> None:
    row_id, acknowledge, reason = env.enqueue(inbound(), kind=kind)
    assert row_id is None and not acknowledge and kind.value in reason


@pytest.mark.parametrize("sender", ["noreply@example.nhs.uk", "No Reply <no-reply@example.nhs.uk>",
                                    "MAILER-DAEMON@example.nhs.uk", "postmaster@example.nhs.uk",
                                    "Us <blfi@example.org>", "swig@example.org"])
def test_forbidden_recipients_get_no_row(env, sender) -> None:
    row_id, acknowledge, _ = env.enqueue(inbound(from_=sender))
    assert row_id is None and not acknowledge


def test_switches_off(tmp_path, smtp_server) -> None:
    off = Env(tmp_path / "a", smtp_server, ack={"enabled": False})
    assert off.enqueue(inbound())[0] is None
    box_off = Env(tmp_path / "b", smtp_server, mailbox={"ack": False})
    row_id, acknowledge, reason = box_off.enqueue(inbound())
    assert row_id is None and not acknowledge and "mailbox" in reason


def test_window_per_recipient_per_group(tmp_path, smtp_server) -> None:
    env = Env(tmp_path, smtp_server, ack={"window_hours": 24})
    assert env.enqueue(inbound())[0] is not None
    row_id, acknowledge, reason = env.enqueue(inbound(from_="JANE <Jane@Example.nhs.uk>"))
    assert row_id is None and not acknowledge and "already acknowledged" in reason
    assert env.enqueue(inbound(), groups=("SDIG",))[0] is not None     # another group: yes
    env.clock.advance(hours=25)
    assert env.enqueue(inbound())[0] is not None


def test_hourly_cap_holds_and_logs(tmp_path, smtp_server, caplog) -> None:
    env = Env(tmp_path, smtp_server, ack={"max_per_hour": 2})
    first, second = env.enqueue(inbound(from_="a@example.nhs.uk"))[0], env.enqueue(inbound(from_="b@example.nhs.uk"))[0]
    with caplog.at_level(logging.ERROR, logger="intake.ack"):
        held, acknowledge, reason = env.enqueue(inbound(from_="c@example.nhs.uk"))
    assert acknowledge and "hourly cap" in reason
    assert any("held" in r.getMessage() and "c***@example.nhs.uk" in r.getMessage() for r in caplog.records)
    report = env.deliver()
    assert (report.sent, report.held) == (2, 1)
    with env.sessions() as s:
        assert [s.get(Outbox, i).status for i in (first, second, held)] == ["sent", "sent", "held"]
    env.clock.advance(hours=2)   # the cap counts the last hour only
    assert env.enqueue(inbound(from_="d@example.nhs.uk"))[1] is True
    with env.sessions() as s:
        assert s.execute(select(Outbox.status).where(Outbox.to_address == "d@example.nhs.uk")).scalar_one() == "pending"


def test_backlog_at_first_connection_is_stored_not_acknowledged(env) -> None:
    connected = env.clock.now()
    row_id, acknowledge, reason = env.enqueue(inbound(), received_at=connected - dt.timedelta(days=5),
                                              first_connected=connected)
    assert row_id is None and not acknowledge and "backlog" in reason
    assert env.enqueue(inbound(from_="new@example.nhs.uk"), received_at=connected - dt.timedelta(hours=2),
                       first_connected=connected)[0] is not None


def _dsn(quoted: str, as_attachment: bool) -> bytes:
    if as_attachment:
        original = f"Message-ID: <{quoted}>\r\nFrom: blfi@example.org\r\nTo: gone@example.nhs.uk\r\nSubject: x\r\n\r\nHello\r\n"
        tail = f"Content-Type: message/rfc822\r\n\r\n{original}"
    else:
        tail = f"Content-Type: text/rfc822-headers\r\n\r\nMessage-ID: <{quoted}>\r\nTo: gone@example.nhs.uk\r\n"
    return (f"From: Mail Delivery System <MAILER-DAEMON@mx.example.nhs.uk>\r\nTo: blfi@example.org\r\n"
            f"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-{quoted[:8]}@mx.example.nhs.uk>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n"
            f"--b\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
            f"--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.nhs.uk\r\n\r\n"
            f"Final-Recipient: rfc822; gone@example.nhs.uk\r\nAction: failed\r\nStatus: 5.1.1\r\n"
            f"--b\r\n{tail}--b--\r\n").encode()


@pytest.mark.parametrize("as_attachment", [False, True])
def test_bounce_quoting_our_message_id_marks_row_and_applications_undeliverable(env, as_attachment) -> None:
    row_id, _, _ = env.enqueue(inbound(from_="gone@example.nhs.uk"), groups=("SWIG", "SDIG"))
    other_id, _, _ = env.enqueue(inbound(from_="here@example.nhs.uk"))
    env.deliver()
    with env.sessions() as s:
        ours = s.get(Outbox, row_id).message_id
    with env.sessions.begin() as s:
        assert env.ack.record_bounce(s, parse(_dsn("ack-0000@somewhere.else", as_attachment))) == []
        marked = env.ack.record_bounce(s, parse(_dsn(ours, as_attachment)))
        assert [r.id for r in marked] == [row_id]
    with env.sessions() as s:
        assert s.get(Outbox, row_id).status == "undeliverable" and s.get(Outbox, other_id).status == "sent"
        assert {a.status for a in s.get(Outbox, row_id).applications} == {"undeliverable"}
        assert {a.status for a in s.get(Outbox, other_id).applications} == {"new"}


def test_strict_undefined_fails_loudly(tmp_path, smtp_server) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates", templates)
    base = templates / "ack" / "base.txt"
    base.write_text(base.read_text() + "{{ no_such_variable }}\n")
    env = Env(tmp_path / "cfg", smtp_server, templates_dir=templates)
    with pytest.raises(jinja2.UndefinedError):
        env.enqueue(inbound())


def test_an_edited_template_is_used_from_the_next_reply_on(tmp_path, smtp_server, monkeypatch) -> None:
    """Templates are compiled once and kept; a running service still notices an edit."""
    import intake.ack

    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates", templates)
    env = Env(tmp_path / "cfg", smtp_server, templates_dir=templates)
    assert "Changed text" not in env.ack.preview("SWIG", "Sam")
    group_text = templates / "ack" / "groups" / "SWIG.txt"  # an included template, not the top one
    group_text.write_text("Changed text.\n")
    os.utime(group_text, (time.time() + 5, time.time() + 5))  # a later mtime, however coarse the clock
    monkeypatch.setattr(intake.ack, "TEMPLATE_CHECK_SECONDS", 0.0)
    assert "Changed text" in env.ack.preview("SWIG", "Sam")


def test_missing_privacy_notice_is_a_config_error(tmp_path, smtp_server) -> None:
    env = Env(tmp_path, smtp_server)
    (tmp_path / "privacy_notice.txt").unlink()
    with pytest.raises(ConfigError, match="privacy"):
        Acknowledger(env.settings, env.clock)


def test_preview_cli(env) -> None:
    result = CliRunner().invoke(main, ["--config", str(env.config), "ack", "preview", "--group", "SLGBTIG", "--name", "Sam Taylor"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Dear Sam Taylor,") and "SLGBT+IG" in result.output
    neutral = CliRunner().invoke(main, ["--config", str(env.config), "ack", "preview", "--group", "SWIG"])
    assert neutral.output.startswith("Hello,") and "Senior Women Influencers Group" in neutral.output
    unknown = CliRunner().invoke(main, ["--config", str(env.config), "ack", "preview", "--group", "NOPE"])
    assert unknown.exit_code != 0 and "NOPE" in unknown.output


_NAMES = ["Sam Taylor", "Zoë Ŝmith-Ò'Brien", 'Dr "Sam" Taylor, MBE', "Émilie " * 12, ""]
_SUBJECTS = ["Your interest in SWIG [BLFI-000001]", "Your interest in SWIG and SDIG [BLFI-000001] " + "x" * 80,
             "Votre intérêt — SLGBT+IG [BLFI-000002]"]
_TEXTS = ["Dear Sam,\n\nThank you.\n", "no trailing newline", "CRLF\r\nbare CR\rLF\n\n",
          "Zoë — “quoted” 😀 = trailing space  \n" + "a long line " * 40 + "\n.\nFrom here\n", ""]
_PARENTS = {"": [], "<a@b>": ["<r@b>"], "<" + "m" * 90 + "@example.nhs.uk>": [f"<ref{i}-{'r' * 30}@example.org>" for i in range(14)]}


def test_quoted_printable_is_the_stdlib_body_encoding(monkeypatch) -> None:
    """compose.quoted_printable against the stdlib's Charset.body_encode on random texts built
    from what matters to it: "=", spaces and tabs (at line ends too), CR and LF, characters
    that need escaping, and lines around the 76-character limit."""
    import random

    from intake.ack import compose

    pieces = ["a", "word ", "=", " ", "\t", "\n", "\r\n", "\r", "é", "😀", "\x7f", "\x0c", "\x85", "~", "<>",
              "x" * 70, "y" * 76, "z" * 77]
    rng = random.Random(2026)
    texts = ["", "a", "a\n", " ", "=\n", "x" * 76 + " \n", "x" * 75 + "=\n", "x" * 80]
    texts += ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 40))) for _ in range(5000)]
    fast = 0
    handed_on = []  # the texts quoted_printable gave to the stdlib (soft breaks, trailing blanks)
    stdlib = compose.quoprimime.body_encode
    monkeypatch.setattr(compose.quoprimime, "body_encode", lambda body: handed_on.append(body) or stdlib(body))
    for text in texts:
        expected = compose._UTF8_QP.body_encode(text.encode("utf-8")) if text else ""
        handed_on.clear()
        assert (compose.quoted_printable(text) if text else "") == expected, repr(text)
        fast += not handed_on
    assert 500 < fast < len(texts) - 500  # both of its ways were taken, many times


@pytest.mark.parametrize("calendar", [None, "dates.ics", "dates (SWIG).ics", "Zoë's dates.ics"])
def test_the_direct_writer_gives_the_same_bytes_as_the_stdlib_objects(monkeypatch, calendar) -> None:
    """build_message (what acknowledgements use) against flatten(assemble(...)), the stdlib's
    message objects and generator, with the same boundaries: every combination of the
    names, subjects, texts and threads above."""
    import itertools

    from intake.ack import compose

    for name, subject, text, (parent, references) in itertools.product(_NAMES, _SUBJECTS, _TEXTS, _PARENTS.items()):
        parts = dict(
            sender="Building Leadership for Inclusion <blfi@example.org>", to_name=name,
            to_email="sam.taylor@example.nhs.uk", subject=subject, text=text, html=f"<p>{text}</p>",
            message_id="ack-1@example.org", in_reply_to=parent, references=references,
            now=dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.timezone.utc), loop_value="example.org",
            calendar=compose.CalendarFile(b"BEGIN:VCALENDAR\r\nX-LINE:" + b"y" * 300 + b"\r\nEND:VCALENDAR\r\n",
                                          filename=calendar) if calendar else None)
        counter = itertools.count()
        monkeypatch.setattr(compose, "_boundary", lambda: f"=_{next(counter):032x}")
        direct = compose.build_message(**parts)
        counter = itertools.count()
        reference = compose.flatten(compose.assemble(**parts))
        assert direct == reference, (name, subject, text, parent)
        assert direct.count(b"\n") == direct.count(b"\r\n")  # CRLF throughout, as SMTP sends it
