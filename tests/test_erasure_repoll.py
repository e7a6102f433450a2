"""Erasure end to end with a real Dovecot: after `intake subject erase`, polling again
(the folder re-read, the same mail turning up in another group mailbox) does not bring the
person back; with --delete-from-mailbox the mail is gone from the server too."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update

from intake.cli import main
from intake.crypto import generate_key
from intake.db import make_engine, make_sessionmaker
from intake.models import Application, MailboxState, Message, Tombstone
from tests.support.config import MailboxSpec, write_config
from tests.support.mail import make_mail

PERSON = "Priya Raman <Priya.Raman@example.nhs.uk>"
EMAIL = "priya.raman@example.nhs.uk"


@pytest.fixture
def boxes(dovecot, mail_account):
    return {"SWIG": mail_account("swig")[0], "SDIG": mail_account("sdig")[0]}


def _config(tmp_path: Path, dovecot, boxes) -> Path:
    specs = [MailboxSpec(code.lower(), user, "pw", port=dovecot.port, group=code) for code, user in boxes.items()]
    return write_config(tmp_path, mailboxes=specs, database_url=f"sqlite:///{tmp_path / 'intake.db'}",
                        sections={"ack": {"enabled": False}})


def _cli(config: Path, *args: str, key: str) -> str:
    result = CliRunner().invoke(main, ["--config", str(config), *args], env={"INTAKE_ENCRYPTION_KEY": key},
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _count(sessions, model, *where) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def test_repoll_after_erasure_does_not_bring_the_person_back(tmp_path, dovecot, boxes) -> None:
    key = generate_key()
    mine = make_mail(from_=PERSON, to=boxes["SWIG"], body="Hello,\nI would like to join.\nPriya Raman\n")
    follow_up = make_mail(from_=PERSON, to=boxes["SWIG"], subject="Re: my interest", body="Any news?\nPriya Raman\n")
    other = make_mail(from_="Ravi Ramen <ravi.ramen@example.nhs.uk>", to=boxes["SWIG"])
    for data in (mine, follow_up, other):
        dovecot.append(boxes["SWIG"], "INBOX", data)
    config = _config(tmp_path, dovecot, boxes)
    _cli(config, "run", "--once", "--no-web", key=key)
    engine = make_engine(f"sqlite:///{tmp_path / 'intake.db'}")
    sessions = make_sessionmaker(engine)
    assert _count(sessions, Application, Application.email == EMAIL) == 1

    out = _cli(config, "subject", "erase", "Priya.Raman@example.nhs.uk", "--yes", key=key)
    assert "applications 1, messages 2" in out
    assert _count(sessions, Tombstone) == 2
    # The mail is still on the server. Force a full re-read of the folder (as after a
    # UIDVALIDITY change) and let the same mail arrive late in another group's mailbox.
    with sessions.begin() as session:
        session.execute(update(MailboxState).values(last_uid=0, uidvalidity=None))
    dovecot.append(boxes["SDIG"], "INBOX", mine)
    _cli(config, "run", "--once", "--no-web", key=key)

    assert _count(sessions, Application, Application.email == EMAIL) == 0
    assert _count(sessions, Message, func.lower(Message.from_address) == EMAIL) == 0
    assert _count(sessions, Application, Application.email == "ravi.ramen@example.nhs.uk") == 1
    engine.dispose()
    disk = b"".join(p.read_bytes() for p in tmp_path.glob("intake.db*"))
    for needle in (b"priya.raman@example.nhs.uk", b"Priya.Raman@example.nhs.uk", b"Priya Raman"):
        assert needle not in disk
    assert len(dovecot.uids(boxes["SWIG"], "INBOX")) == 3  # erasure alone leaves the mailbox alone


def test_erase_can_delete_the_mail_from_the_mailbox(tmp_path, dovecot, boxes) -> None:
    key = generate_key()
    dovecot.append(boxes["SWIG"], "INBOX", make_mail(from_=PERSON, to=boxes["SWIG"]))
    dovecot.append(boxes["SWIG"], "INBOX", make_mail(from_="Ravi Ramen <ravi.ramen@example.nhs.uk>", to=boxes["SWIG"]))
    config = _config(tmp_path, dovecot, boxes)
    _cli(config, "run", "--once", "--no-web", key=key)
    out = _cli(config, "subject", "erase", EMAIL, "--yes", "--delete-from-mailbox", key=key)
    assert "mailbox swig: deleted 1 messages" in out
    remaining = dovecot.fetch_all(boxes["SWIG"], "INBOX")
    assert len(remaining) == 1 and b"ravi.ramen@example.nhs.uk" in remaining[0]


@pytest.mark.parametrize("careful", [False, True], ids=["batch", "message by message"])
def test_an_erased_applications_reference_is_never_given_to_someone_else(tmp_path, dovecot, mail_account, careful) -> None:
    """Priya's application is the newest when she is erased. Nobody may get her id (and so
    her reference) after her: she may still quote it, and her mail would be filed with
    theirs. SQLite alone reuses the largest id once its row is deleted."""
    from intake.db import make_engine as engine_for
    from tests.support.config import write_config as config_for

    user, _ = mail_account("floor")
    config = config_for(tmp_path, mailboxes=[MailboxSpec("swig", user, "pw", port=dovecot.port, group="SWIG")],
                        sections={"ack": {"enabled": False}, "worker": {"batch_size": 1 if careful else 200}})
    key = generate_key()
    url = _database_url(config)
    dovecot.append(user, "INBOX", make_mail(from_=PERSON, to=user, body="Hello,\nI would like to join.\nPriya Raman\n"))
    _cli(config, "run", "--once", "--no-web", key=key)
    sessions = make_sessionmaker(engine_for(url))
    with sessions() as session:
        hers = session.execute(select(Application).where(Application.email == EMAIL)).scalar_one()
        her_id, her_reference = hers.id, hers.reference
    _cli(config, "subject", "erase", EMAIL, "--yes", key=key)

    # Batches of one message are stored carefully (a savepoint each), larger ones in one
    # pass: the two hand out ids on different paths.
    newcomers = [make_mail(from_=f"Ravi Ramen {i} <ravi{i}@example.nhs.uk>", to=user) for i in range(3)]
    for data in newcomers:
        dovecot.append(user, "INBOX", data)
    dovecot.append(user, "INBOX", make_mail(from_=PERSON, to=user, subject=f"Re: Your interest in SWIG [{her_reference}]",
                                            body="Any news?\nPriya Raman\n"))
    _cli(config, "run", "--once", "--no-web", key=key)
    with sessions() as session:
        others = list(session.execute(select(Application).where(Application.email != EMAIL)).scalars())
        assert len(others) == len(newcomers)
        assert all(a.id > her_id and a.reference != her_reference for a in others)
        assert all(len(a.messages) == 1 for a in others)  # her follow-up is not filed with them


def _database_url(config: Path) -> str:
    from intake.config import load_settings

    return load_settings(config, env={})["database.url"]
