"""The pipeline's reads of the outbox go through an index, never a scan of the table.

Each poll batch reads the recent replies to its senders (one acknowledgement per person per
group per window) and counts the last hour's replies (the hourly cap); a follow-up or a
bounce looks a reply up by the Message-ID it quotes. Without an index each of those read
the whole outbox, so a backlog's ingestion grew with the square of its size. SQLite's
migration check cannot compare expression indexes, so this reads the plans themselves."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import event, select

from intake.models import Outbox
from tests.support.mail import make_mail
from tests.test_ack import NOW, Env

pytestmark = pytest.mark.sqlite_only  # EXPLAIN QUERY PLAN is SQLite's


def _dsn(quoted: str) -> bytes:
    return (f"From: Mail Delivery System <MAILER-DAEMON@mx.example.nhs.uk>\r\nTo: blfi@example.org\r\n"
            f"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-1@mx.example.nhs.uk>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n"
            f"--b\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
            f"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <{quoted}>\r\nTo: gone@example.nhs.uk\r\n"
            f"--b--\r\n").encode()


def test_no_read_of_the_outbox_scans_the_table(tmp_path, dovecot, smtp_server, mail_account) -> None:
    env = Env(tmp_path, dovecot, smtp_server, mail_account)
    engine = env.sessions.kw["bind"]
    reads: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("SELECT") and "outbox" in statement:
            reads.append((statement, parameters))

    def run() -> None:
        event.listen(engine, "before_cursor_execute", capture)
        try:
            env.run()
        finally:
            event.remove(engine, "before_cursor_execute", capture)

    for i in range(3):
        env.deliver(data=make_mail(from_=f"P{i} <p{i}@example.nhs.uk>", to=env.user, message_id=f"<p{i}@example.nhs.uk>"))
    run()
    with env.sessions() as s:
        ack_id = s.execute(select(Outbox.message_id).where(Outbox.to_address == "p0@example.nhs.uk")).scalar_one()
    env.clock.advance(minutes=5)
    env.deliver(data=make_mail(from_="P0 <P0@Example.nhs.uk>", to=env.user, subject="Re: your application",
                               headers={"In-Reply-To": f"<{ack_id.upper()}>"}))
    env.deliver(data=_dsn(ack_id))
    run()

    kinds = {"recent replies": "lower(outbox.to_address) IN", "hourly cap": "count(*)",
             "reply by Message-ID": "lower(outbox.message_id) IN"}
    seen = {name: False for name in kinds}
    scans: list[str] = []
    with engine.connect() as conn:
        for statement, parameters in reads:
            for name, marker in kinds.items():
                seen[name] = seen[name] or marker in statement
            plan = [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
            scans += [f"{step}  <-  {' '.join(statement.split())[:200]}" for step in plan
                      if step.startswith("SCAN outbox")]
    assert seen == {name: True for name in kinds}, "the run did not make every read this test is about"
    assert scans == []
    with env.sessions() as s:  # the follow-up and the bounce found their reply
        assert s.execute(select(Outbox.status).where(Outbox.message_id == ack_id)).scalar_one() == "undeliverable"
