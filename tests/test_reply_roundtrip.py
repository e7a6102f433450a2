"""A coordinator's reply and the applicant's answer, for real: the interest arrives over IMAP
(Dovecot), the acknowledgement and the reply go out over SMTP (aiosmtpd), and the answer to
the reply comes back over IMAP, joins the same application, marks it as needing attention
and gets no automatic acknowledgement."""

from __future__ import annotations

import email
import json
from email import policy

from click.testing import CliRunner
from sqlalchemy import select

from intake.cli import main
from intake.config import load_settings
from intake.db import make_engine, make_sessionmaker
from intake.models import Application
from tests.support.config import MailboxSpec, write_config
from tests.support.mail import make_mail


def _cli(config, *args: str) -> str:
    result = CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _json(config, *args: str) -> list[dict]:
    return json.loads(_cli(config, *args, "--format", "json"))


def test_the_applicants_answer_to_a_reply_joins_the_application_without_an_ack(tmp_path, dovecot, smtp_server) -> None:
    box = f"swig-roundtrip-{id(tmp_path) % 10**8}@example.org"
    dovecot.add_user(box, "pw")
    config = write_config(tmp_path, mailboxes=[MailboxSpec("swig", box, "pw", port=dovecot.port, group="SWIG")],
                          smtp_port=smtp_server.port)
    applicant = "nadia.hussain@example.nhs.uk"
    dovecot.append(box, "INBOX", make_mail(from_=f"Nadia Hussain <{applicant}>", to=box, subject="SWIG",
                                           body="Hello,\n\nI would like to join SWIG.\n\nNadia Hussain\n"))
    _cli(config, "run", "--once")
    [app] = _json(config, "queue", "list")
    assert (app["group"], app["email"], app["message_count"]) == ("SWIG", applicant, 1)
    assert [m.rcpt_tos for m in smtp_server.messages] == [[applicant]]  # the acknowledgement

    _cli(config, "reply", "send", str(app["id"]), "--template", "more_information", "--as", "Pat Coordinator", "--yes")
    _cli(config, "run", "--once")  # delivers the reply
    assert len(smtp_server.messages) == 2
    reply = email.message_from_bytes(smtp_server.messages[-1].data, policy=policy.default)
    assert reply["Auto-Submitted"] is None and app["reference"] in reply["Subject"]
    assert [a["status"] for a in _json(config, "queue", "list")] == ["contacted"]

    # The applicant answers the reply from their mail program.
    answer_id = "<nadia-answer-1@example.nhs.uk>"
    dovecot.append(box, "INBOX", make_mail(
        from_=f"Nadia Hussain <{applicant}>", to=box, subject=f"Re: {reply['Subject']}", message_id=answer_id,
        headers={"In-Reply-To": reply["Message-ID"], "References": f"{reply['References']} {reply['Message-ID']}"},
        body="Thank you. I manage the nursing workforce team of 40 people.\n\nNadia\n"))
    outbox_before = _json(config, "outbox", "list")
    _cli(config, "run", "--once")

    answer = next(m for m in _json(config, "messages", "list") if m["message_id"].strip("<>") == answer_id.strip("<>"))
    assert answer["kind"] == "follow_up", answer
    assert answer["application_ids"] == [app["id"]]
    [after] = _json(config, "queue", "list")
    assert (after["id"], after["message_count"], after["status"]) == (app["id"], 2, "contacted")
    assert _json(config, "outbox", "list") == outbox_before  # nothing queued for the answer
    assert len(smtp_server.messages) == 2  # and nothing sent
    settings = load_settings(config, env={})
    engine = make_engine(settings["database.url"])
    try:
        with make_sessionmaker(engine)() as session:
            assert session.scalar(select(Application.needs_attention).where(Application.id == app["id"])) is True
    finally:
        engine.dispose()
