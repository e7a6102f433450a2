"""A poll batch is stored in one pass without a savepoint per message; when one message
fails, the batch is rolled back and stored again message by message (real Dovecot)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from intake.cli import main
from intake.config import load_settings
from intake.db import make_engine, make_sessionmaker
from intake.models import Application, ApplicationMessage, Message, MessageSource, Outbox, Quarantine
from intake.store import reference_for
from tests.support.config import MailboxSpec, write_config
from tests.support.inject import routing_fails_on
from tests.support.mail import make_mail


@pytest.fixture
def swig(dovecot, request) -> str:
    user = f"swig-batch-{abs(hash(request.node.name)) % 10**8}@example.org"
    dovecot.add_user(user, "pw")
    return user


@pytest.fixture
def passes(monkeypatch) -> list[tuple[int, bool]]:
    """Each call of the batch store: (messages in the batch, careful)."""
    import intake.pipeline as pipeline

    calls: list[tuple[int, bool]] = []
    real = pipeline._store_batch

    def spy(*args, careful: bool, **kw):  # type: ignore[no-untyped-def]
        calls.append((len(args[3]), careful))
        return real(*args, careful=careful, **kw)

    monkeypatch.setattr(pipeline, "_store_batch", spy)
    return calls


def _config(tmp_path: Path, dovecot, user: str) -> Path:
    box = MailboxSpec("swig", user, "pw", port=dovecot.port, group="SWIG")
    return write_config(tmp_path, mailboxes=[box], smtp_port=9,
                        sections={"ack": {"enabled": True}, "worker": {"batch_size": 50}})


def _run(config: Path) -> str:
    result = CliRunner().invoke(main, ["--config", str(config), "run", "--once"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _sessions(config: Path):  # type: ignore[no-untyped-def]
    return make_sessionmaker(make_engine(load_settings(config, env={})["database.url"]))


def _mails(user: str) -> list[bytes]:
    senders = ["Ann One <ann@example.nhs.uk>", "Bob Two <bob@example.nhs.uk>", "Ann One <ann@example.nhs.uk>",
               "Cat Three <cat@example.nhs.uk>", "Dan Four <dan@example.nhs.uk>"]
    return [make_mail(from_=s, to=user, subject=f"Interest {i}", message_id=f"<batch-{i}@example.nhs.uk>")
            for i, s in enumerate(senders)]


def _check_stored(config: Path, expected_senders: set[str]) -> None:
    with _sessions(config)() as s:
        apps = list(s.execute(select(Application).order_by(Application.id)).scalars())
        assert {a.email for a in apps} == expected_senders
        assert len(apps) == len(expected_senders)  # one per person per group, even within one batch
        for app in apps:
            assert app.reference == reference_for(app.id)
        messages = list(s.execute(select(Message).where(Message.kind == "interest")).scalars())
        links = set(s.execute(select(ApplicationMessage.application_id, ApplicationMessage.message_pk)).all())
        by_email = {a.email: a.id for a in apps}
        assert links == {(by_email[m.from_address], m.id) for m in messages}
        sources = list(s.execute(select(MessageSource.message_pk)).scalars())
        assert sorted(sources) == sorted(m.id for m in messages)
        acks = list(s.execute(select(Outbox)).scalars())
        # One acknowledgement per person (the second message from Ann is within the window),
        # naming the reference of the application it acknowledges.
        assert sorted(o.to_address for o in acks) == sorted(expected_senders)
        for row in acks:
            (app,) = row.applications
            assert app.email == row.to_address and f"[{app.reference}]" in row.subject
            assert row.source_message_pk in {m.id for m in messages if m.from_address == row.to_address}
        ann = s.execute(select(Application).where(Application.email == "ann@example.nhs.uk")).scalar_one()
        assert ann.needs_attention  # her second message, stored in the same batch


@pytest.fixture
def application_flushes():
    """How many new applications each flush that wrote some wrote (any session)."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    seen: list[int] = []

    def count(session, _context):  # type: ignore[no-untyped-def]
        new = sum(isinstance(obj, Application) for obj in session.new)
        if new:
            seen.append(new)

    event.listen(Session, "after_flush", count)
    yield seen
    event.remove(Session, "after_flush", count)


def test_clean_batch_is_stored_in_one_pass(tmp_path, dovecot, swig, passes, application_flushes) -> None:
    dovecot.append_many(swig, "INBOX", _mails(swig))
    config = _config(tmp_path, dovecot, swig)
    out = _run(config)
    assert "stored 5" in out and "acks queued 4" in out, out
    assert passes == [(5, False)]
    # The batch's rows are written together at its end: its four new applications in one
    # flush, not a flush per message.
    assert application_flushes == [4]
    _check_stored(config, {"ann@example.nhs.uk", "bob@example.nhs.uk", "cat@example.nhs.uk", "dan@example.nhs.uk"})
    assert "stored 0" in _run(config)


def test_a_failing_message_sends_the_batch_round_again_carefully(tmp_path, dovecot, swig, passes, monkeypatch) -> None:
    """A bug in our own code on one message (injected: no server can produce it)."""
    routing_fails_on(monkeypatch, lambda subject: subject == "Interest 3")
    dovecot.append_many(swig, "INBOX", _mails(swig))
    config = _config(tmp_path, dovecot, swig)
    out = _run(config)
    assert "fetched 5, stored 4" in out and "quarantined 1" in out and "acks queued 3" in out, out
    assert passes == [(5, False), (5, True)]
    _check_stored(config, {"ann@example.nhs.uk", "bob@example.nhs.uk", "dan@example.nhs.uk"})
    with _sessions(config)() as s:
        (q,) = s.execute(select(Quarantine)).scalars().all()
        assert "routing exploded" in q.reason and b"Interest 3" in q.data


def test_a_single_message_batch_is_stored_carefully_at_once(tmp_path, dovecot, swig, passes) -> None:
    dovecot.append(swig, "INBOX", _mails(swig)[0])
    config = _config(tmp_path, dovecot, swig)
    assert "stored 1" in _run(config)
    assert passes == [(1, True)]


@pytest.mark.sqlite_only
def test_sqlite_write_lock_is_free_while_a_batch_is_parsed(tmp_path, dovecot, swig, monkeypatch) -> None:
    """The batch's rows are written at its end: until then the web app (or delivery) can
    write without waiting for the whole batch to be read and parsed."""
    import sqlite3

    import intake.pipeline as pipeline

    config = _config(tmp_path, dovecot, swig)
    db_file = load_settings(config, env={})["database.url"].removeprefix("sqlite:///")
    real = pipeline.process_raw
    seen: list[str] = []

    def probe(session, settings, mailbox, raw, *args, **kw):  # type: ignore[no-untyped-def]
        if raw.ref.uid == 4:  # three messages of the batch already stored in the session
            other = sqlite3.connect(db_file, timeout=0, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
                seen.append("free")
            except sqlite3.OperationalError as exc:
                seen.append(str(exc))
            finally:
                other.close()
        return real(session, settings, mailbox, raw, *args, **kw)

    monkeypatch.setattr(pipeline, "process_raw", probe)
    dovecot.append_many(swig, "INBOX", _mails(swig))
    assert "stored 5" in _run(config)
    assert seen == ["free"]


@pytest.mark.sqlite_only
def test_an_application_written_meanwhile_sends_the_batch_round_again(tmp_path, dovecot, swig, passes,
                                                                       monkeypatch) -> None:
    """Another writer inserts an application while the batch is parsed (its ids were handed
    out without the write lock): the batch's write clashes, and it is stored carefully."""
    import sqlite3

    import intake.pipeline as pipeline

    config = _config(tmp_path, dovecot, swig)
    db_file = load_settings(config, env={})["database.url"].removeprefix("sqlite:///")
    real = pipeline.process_raw

    def meanwhile(session, settings, mailbox, raw, *args, **kw):  # type: ignore[no-untyped-def]
        if raw.ref.uid == 3 and len(passes) == 1:
            other = sqlite3.connect(db_file, isolation_level=None)
            other.execute("INSERT INTO applications (id, reference, group_code, status, name, email, job_title, "
                          "organisation, notes, route_reason, received_at, created_at, updated_at, "
                          "status_changed_at, needs_attention) VALUES (2, 'OTHER-2', 'SDIG', 'new', 'Eve', "
                          "'eve@example.nhs.uk', '', '', '', '', '2026-11-27', '2026-11-27', '2026-11-27', "
                          "'2026-11-27', 0)")
            other.close()
        return real(session, settings, mailbox, raw, *args, **kw)

    monkeypatch.setattr(pipeline, "process_raw", meanwhile)
    dovecot.append_many(swig, "INBOX", _mails(swig))
    out = _run(config)
    assert "stored 5" in out and "acks queued 4" in out, out
    assert passes == [(5, False), (5, True)]
    with _sessions(config)() as s:
        assert s.get(Application, 2).email == "eve@example.nhs.uk"
        swig_apps = list(s.execute(select(Application).where(Application.group_code == "SWIG")).scalars())
        assert sorted(a.email for a in swig_apps) == ["ann@example.nhs.uk", "bob@example.nhs.uk",
                                                      "cat@example.nhs.uk", "dan@example.nhs.uk"]
        assert all(a.reference == reference_for(a.id) for a in swig_apps)
