"""Mail loops: two intake installations whose replies land in each other's mailboxes, with a
naive auto-responder in between, exchange a small, bounded number of messages and stop."""

from __future__ import annotations

import datetime as dt
import email
from email.message import EmailMessage

from intake.clock import FixedClock
from intake.config import load_settings
from intake.db import make_engine, make_sessionmaker, upgrade
from intake.worker import build_ports, prepare, run_once
from tests.servers.smtp import SmtpServer
from tests.support.config import MailboxSpec, write_config
from tests.support.mail import make_mail


class Installation:
    def __init__(self, directory, dovecot, user: str):
        self.user = user
        self.smtp = SmtpServer().start()
        config = write_config(directory, mailboxes=[MailboxSpec("box", user, "pw", port=dovecot.port, group="SWIG")],
                              smtp_port=self.smtp.port, sections={
                                  "smtp": {"from_address": f"Intake <{user}>"}, "ack": {"enabled": True}})
        self.settings = load_settings(config, env={})
        upgrade(self.settings["database.url"])
        self.sessions = make_sessionmaker(make_engine(self.settings["database.url"]))
        prepare(self.settings, self.sessions)

    def cycle(self, clock) -> None:  # type: ignore[no-untyped-def]
        run_once(self.settings, self.sessions, build_ports(self.settings, clock))

    def take_outgoing(self) -> list:
        sent = self.smtp.messages
        self.smtp.clear()
        return sent


def naive_autoresponder(to_sender: str, me: str, original: bytes) -> bytes:
    """Answers everything, copies the subject, and sets none of the RFC 3834 headers."""
    incoming = email.message_from_bytes(original)
    reply = EmailMessage()
    reply["From"] = me
    reply["To"] = to_sender
    reply["Subject"] = f"Re: {incoming['Subject']}"
    reply["Message-ID"] = f"<naive-{abs(hash(original))}@example.nhs.uk>"
    reply.set_content("Thank you for your email. I am away and will reply when I return.")
    return reply.as_bytes()


def test_two_installations_and_a_naive_autoresponder_do_not_loop(tmp_path, dovecot, mail_account) -> None:
    a_user, _ = mail_account("intake-a")
    b_user, _ = mail_account("intake-b")
    naive = "away@example.nhs.uk"
    a = Installation(tmp_path / "a", dovecot, a_user)
    b = Installation(tmp_path / "b", dovecot, b_user)
    clock = FixedClock(dt.datetime.now(dt.timezone.utc))
    # Kick-off: the naive responder's owner writes to A, and B writes to A (so A answers B).
    dovecot.append(a_user, "INBOX", make_mail(from_=f"Away Person <{naive}>", to=a_user))
    dovecot.append(a_user, "INBOX", make_mail(from_=f"Intake B <{b_user}>", to=a_user))
    traffic: list[int] = []
    try:
        for _round in range(8):
            moved = 0
            for inst in (a, b):
                inst.cycle(clock)
                for out in inst.take_outgoing():
                    for rcpt in out.rcpt_tos:
                        moved += 1
                        if rcpt == naive:
                            dovecot.append(inst.user, "INBOX", naive_autoresponder(inst.user, naive, out.data))
                        elif rcpt in (a_user, b_user):
                            dovecot.append(rcpt, "INBOX", out.data)
            traffic.append(moved)
            clock.advance(minutes=5)
    finally:
        a.smtp.stop()
        b.smtp.stop()
    assert sum(traffic) <= 4, f"messages sent per round: {traffic}"
    assert traffic[-3:] == [0, 0, 0], f"still sending at the end: {traffic}"
