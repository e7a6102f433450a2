"""Subject access and erasure on a real SQLite file: the export holds everything and only
that person's data; erasure leaves no trace in any table or in the database files."""

from __future__ import annotations

import datetime as dt
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from intake.audit import record
from intake.cli import main
from intake.config import load_settings
from intake.crypto import KeyMissing, RawCipher, generate_key, tombstone_hashes
from intake.db import make_engine, make_sessionmaker, upgrade
from intake.domain import SourceRef, content_hash
from intake.models import (
    Application,
    ApplicationMessage,
    AttachmentRow,
    AuditEvent,
    Message,
    MessageSource,
    Outbox,
    Quarantine,
    RawMessageRow,
    Tombstone,
)
from intake.subject import confirmed_withdrawals, erase_subject, export_subject, is_tombstoned, scrub_storage
from tests.support.config import write_config
from tests.support.mail import make_mail

T0 = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.timezone.utc)
_uid = iter(range(1, 10_000))


@dataclass
class Person:
    email: str
    name: str
    apps: list[int] = field(default_factory=list)
    messages: list[int] = field(default_factory=list)
    outbox: list[int] = field(default_factory=list)
    quarantine: list[int] = field(default_factory=list)
    views: list[int] = field(default_factory=list)
    raws: list[bytes] = field(default_factory=list)


def add_person(session, cipher: RawCipher, email: str, name: str, *, groups=("SWIG", "SDIG")) -> Person:
    """An applicant as the pipeline leaves them: two applications, their message (raw,
    attachment, source), a manager's forward about them, a Cc to them, an ack, a
    quarantined message, and a coordinator's view of each application."""
    p = Person(email, name)
    mail = make_mail(from_=f"{name} <{email}>", body=f"Hello,\nI am {name}, please add me.\n{name}\n")
    first = _message(session, cipher, mail, from_=email, from_name=name, body=f"I am {name}")
    first.attachments.append(AttachmentRow(filename="cv.txt", content_type="text/plain", size=9,
                                           **dict(zip(("data", "encrypted"), cipher.seal(f"CV {name}".encode())))))
    forward = make_mail(from_="Manager <boss@example.nhs.uk>", body=f"Please consider {name} ({email}).\n")
    fwd = _message(session, cipher, forward, from_="boss@example.nhs.uk", from_name="Manager", body=f"consider {name}")
    cc_mail = make_mail(from_="Colleague <col@example.nhs.uk>", cc=email, body="Copying you in.\n")
    cc = _message(session, cipher, cc_mail, from_="col@example.nhs.uk", from_name="Colleague", body="Copying", to=[email])
    session.flush()
    for code in groups:
        app = Application(group_code=code, status="new", name=name, email=email.lower(), job_title="Director",
                          organisation="Leeds NHS", notes=f"spoke to {name}", received_at=T0)
        session.add(app)
        session.flush()
        app.reference = f"BLFI-{app.id:06d}"
        session.add_all([ApplicationMessage(application_id=app.id, message_pk=first.id),
                         ApplicationMessage(application_id=app.id, message_pk=fwd.id)])
        p.apps.append(app.id)
        record(session, actor="coord@example.org", action="application.view", target_type="application",
               target_id=app.id, group_code=code)
    ack = Outbox(kind="ack", to_address=email.lower(), subject="Your interest", message_id=f"ack-{next(_uid)}@x",
                 body=f"To: {name} <{email}>\r\n\r\nDear {name}\r\n".encode(), source_message_pk=first.id,
                 created_at=T0, status="sent")
    ack.applications.extend(session.get(Application, a) for a in p.apps)
    session.add(ack)
    q_raw = f"From: {name} <{email.upper()}>\r\nbroken".encode()
    data, enc = cipher.seal(q_raw)
    q = Quarantine(mailbox="swig", uidvalidity=7, uid=next(_uid), content_hash=content_hash(q_raw), data=data,
                   encrypted=enc, reason="unparseable", created_at=T0)
    session.add(q)
    session.flush()
    p.views = [v.id for v in session.execute(select(AuditEvent).where(
        AuditEvent.target_type == "application", AuditEvent.target_id.in_([str(a) for a in p.apps]))).scalars()]
    p.messages, p.outbox, p.quarantine = sorted([first.id, fwd.id, cc.id]), [ack.id], [q.id]
    p.raws = [mail, forward, cc_mail, q_raw]
    return p


def _message(session, cipher, raw: bytes, *, from_: str, from_name: str, body: str, to=None) -> Message:
    from email import message_from_bytes

    mid = message_from_bytes(raw)["Message-ID"]
    m = Message(message_id=mid, message_id_key=mid.strip("<>").lower(), content_hash=content_hash(raw), mailbox="swig",
                kind="interest", from_address=from_.lower(), from_name=from_name, to_addresses=["swig@example.org", *(to or [])],
                subject="Expression of interest", received_at=T0, fetched_at=T0, body_text=body)
    data, enc = cipher.seal(raw)
    m.raw = RawMessageRow(data=data, encrypted=enc, stored_at=T0)
    m.sources.append(MessageSource(mailbox="swig", uidvalidity=7, uid=next(_uid)))
    session.add(m)
    session.flush()
    return m


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "intake.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = make_engine(url)
    yield path, engine, make_sessionmaker(engine)
    engine.dispose()


def _disk(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


# -- export ---------------------------------------------------------------------------------
def test_export_holds_everything_and_only_that_person(db, tmp_path) -> None:
    path, engine, sessions = db
    key = generate_key()
    cipher = RawCipher.from_text(key)
    with sessions.begin() as session:
        priya = add_person(session, cipher, "Priya.Raman@example.nhs.uk", "Priya Raman")
        # Addresses that contain hers, and one she is inside of: none of them is her.
        others = [add_person(session, cipher, "a.priya.raman@example.nhs.uk", "Arun Patel", groups=("SBAMEIG",)),
                  add_person(session, cipher, "priya.raman@example.nhs.uk.test", "Tom Jones", groups=("SWIG",))]
    config = write_config(tmp_path / "cfg", mailboxes=[], database_url=f"sqlite:///{path}")
    out = tmp_path / "export.zip"
    result = CliRunner().invoke(main, ["--config", str(config), "subject", "export", "PRIYA.RAMAN@example.nhs.uk",
                                       "--out", str(out)], env={"INTAKE_ENCRYPTION_KEY": key}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(out) as zf:
        data = json.loads(zf.read("subject.json"))
        files = {name: zf.read(name) for name in zf.namelist()}
    assert sorted(a["id"] for a in data["applications"]) == priya.apps
    assert {a["group"] for a in data["applications"]} == {"SWIG", "SDIG"}
    assert sorted(m["id"] for m in data["messages"]) == priya.messages
    assert [o["id"] for o in data["outbox"]] == priya.outbox
    assert [q["id"] for q in data["quarantine"]] == priya.quarantine
    viewed = {(e["actor"], e["target_id"]) for e in data["audit"] if e["action"] == "application.view"}
    assert viewed == {("coord@example.org", str(a)) for a in priya.apps}
    # The raw mail, decrypted, and the attachment and the sent ack are in the zip.
    for raw in priya.raws:
        assert raw in files.values()
    assert b"CV Priya Raman" in files.values()
    assert any(b"Dear Priya Raman" in content for content in files.values())
    everything = b"".join(files.values()).lower()
    for other in others:
        assert other.name.lower().encode() not in everything
        assert other.email.lower().encode() not in everything
    with sessions() as session:  # the export itself is audited, without personal data
        event = session.execute(select(AuditEvent).where(AuditEvent.action == "subject.export")).scalar_one()
        assert event.details["applications"] == priya.apps
        assert "priya" not in json.dumps(event.details).lower()


def test_export_of_an_unknown_address_is_empty(db) -> None:
    _, _, sessions = db
    with sessions.begin() as session:
        add_person(session, RawCipher(), "priya.raman@example.nhs.uk", "Priya Raman")
        data = export_subject(session, "nobody@example.nhs.uk", RawCipher())
    assert all(data[k] == [] for k in ("applications", "messages", "outbox", "quarantine", "audit"))


# -- erasure ----------------------------------------------------------------------------------
def test_erase_leaves_no_trace_in_tables_or_on_disk(db, tmp_path) -> None:
    path, engine, sessions = db
    plain = RawCipher()  # plaintext at rest: the hardest case for "no trace on disk"
    with sessions.begin() as session:
        priya = add_person(session, plain, "Priya.Raman@Example.NHS.uk", "Priya Raman")
        ravi = add_person(session, plain, "priya.ramen@example.nhs.uk", "Ravi Ramen")
        record(session, actor="coord@example.org", action="note", target_type="application", target_id=priya.apps[0],
               details={"note": "called priya.raman@example.nhs.uk"})
    assert b"Priya Raman" in _disk(path)  # the search below can find her when she is there
    config = write_config(tmp_path / "cfg", mailboxes=[], database_url=f"sqlite:///{path}")
    result = CliRunner().invoke(main, ["--config", str(config), "subject", "erase", "priya.raman@example.nhs.uk", "--yes"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "applications 2, messages 3, outbox 1, quarantine 1" in result.output
    engine.dispose()
    disk = _disk(path)
    for needle in ("Priya.Raman@Example.NHS.uk", "priya.raman@example.nhs.uk", "PRIYA.RAMAN@EXAMPLE.NHS.UK",
                   "Priya Raman", "priya raman", "PRIYA RAMAN", "CV Priya"):
        assert needle.encode() not in disk, needle
    assert b"Ravi Ramen" in disk and b"priya.ramen@example.nhs.uk" in disk
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Application)) == 2  # Ravi's two
        assert set(session.execute(select(Message.id)).scalars()) == set(ravi.messages)
        assert set(session.execute(select(Outbox.id)).scalars()) == set(ravi.outbox)
        assert set(session.execute(select(Quarantine.id)).scalars()) == set(ravi.quarantine)
        assert session.scalar(select(func.count()).select_from(RawMessageRow)) == 3
        assert session.scalar(select(func.count()).select_from(AttachmentRow)) == 1
        views = list(session.execute(select(AuditEvent).where(AuditEvent.id.in_(priya.views))).scalars())
        assert len(views) == 2  # who viewed her record stays on the trail (ids only)
        erasure = session.execute(select(AuditEvent).where(AuditEvent.action == "subject.erase")).scalar_one()
        assert erasure.details["applications"] == 2 and erasure.details["messages"] == 3
        tombs = {t.content_hash: t.message_id_hash for t in session.execute(select(Tombstone)).scalars()}
    for raw in priya.raws:
        assert content_hash(raw) in tombs
    assert tombs[content_hash(priya.raws[0])] == tombstone_hashes("", _mid(priya.raws[0]))[1] != ""


def test_erase_reports_the_mailbox_copies_and_tombstones_them(db) -> None:
    _, _, sessions = db
    with sessions.begin() as session:
        priya = add_person(session, RawCipher(), "priya.raman@example.nhs.uk", "Priya Raman")
        add_person(session, RawCipher(), "ravi@example.nhs.uk", "Ravi")
        refs = {SourceRef(s.mailbox, s.uidvalidity, s.uid) for s in session.execute(
            select(MessageSource).where(MessageSource.message_pk.in_(priya.messages))).scalars()}
        report = erase_subject(session, "priya.raman@example.nhs.uk", actor="admin@example.org")
    assert refs <= set(report.sources) and len(report.sources) == 4  # three messages + the quarantined one
    assert report.tombstones == 4
    with sessions() as session:
        for raw in priya.raws:
            assert is_tombstoned(session, content_hash(raw), "")
        # Same Message-ID, different bytes (a re-sent copy): still erased.
        assert is_tombstoned(session, "0" * 64, _mid(priya.raws[0]).upper())
        assert not is_tombstoned(session, "0" * 64, "<someone-else@example.nhs.uk>")


def test_erase_needs_the_key_to_search_encrypted_quarantine(db) -> None:
    _, _, sessions = db
    cipher = RawCipher.from_text(generate_key())
    with sessions.begin() as session:
        add_person(session, cipher, "priya.raman@example.nhs.uk", "Priya Raman")
    with pytest.raises(KeyMissing), sessions.begin() as session:
        erase_subject(session, "priya.raman@example.nhs.uk", actor="cli")
    with sessions.begin() as session:
        report = erase_subject(session, "priya.raman@example.nhs.uk", actor="cli", cipher=cipher)
    assert report.quarantine == 1 and report.applications == 2


def test_confirmed_withdrawals_need_every_application_withdrawn_and_a_sent_reply(db) -> None:
    _, _, sessions = db
    with sessions.begin() as session:
        a = add_person(session, RawCipher(), "a@example.nhs.uk", "Anne A")
        b = add_person(session, RawCipher(), "b@example.nhs.uk", "Ben B")
        for app_id in a.apps + b.apps[:1]:
            session.get(Application, app_id).status = "withdrawn"
        for who in (a, b):
            row = Outbox(kind="withdrawal", to_address=who.email, message_id=f"w-{who.email}", body=b"x", status="sent")
            row.applications.extend(session.get(Application, i) for i in who.apps)
            session.add(row)
        pending = Outbox(kind="withdrawal", to_address="x", message_id="w-pending", body=b"x", status="pending")
        session.add(pending)
    with sessions() as session:
        assert confirmed_withdrawals(session) == ["a@example.nhs.uk"]


def test_scrub_storage_is_a_no_op_off_sqlite_and_reports_success(db) -> None:
    _, engine, _ = db
    assert scrub_storage(engine) is True


def _mid(raw: bytes) -> str:
    from email import message_from_bytes

    return message_from_bytes(raw)["Message-ID"]


def test_export_and_erase_on_postgresql(postgres_url, tmp_path) -> None:
    """The same queries on PostgreSQL (JSON casts, bytea scans, explicit child deletes)."""
    from intake.retention import apply_retention

    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    sessions = make_sessionmaker(engine)
    cipher = RawCipher.from_text(generate_key())
    try:
        with sessions.begin() as session:
            priya = add_person(session, cipher, "Priya.Raman@example.nhs.uk", "Priya Raman")
            other = add_person(session, cipher, "a.priya.raman@example.nhs.uk", "Arun Patel", groups=("SBAMEIG",))
        with sessions() as session:
            data = export_subject(session, "priya.raman@example.nhs.uk", cipher)
        assert sorted(m["id"] for m in data["messages"]) == priya.messages
        assert [q["id"] for q in data["quarantine"]] == priya.quarantine
        with sessions.begin() as session:
            report = erase_subject(session, "priya.raman@example.nhs.uk", actor="cli", cipher=cipher)
        assert (report.applications, report.messages, report.outbox, report.quarantine) == (2, 3, 1, 1)
        assert scrub_storage(engine) is True
        with sessions() as session:
            assert set(session.execute(select(Message.id)).scalars()) == set(other.messages)
            assert session.scalar(select(func.count()).select_from(Application)) == 1
            assert is_tombstoned(session, content_hash(priya.raws[0]), "")
        with sessions.begin() as session:
            settings = load_settings(write_config(tmp_path, mailboxes=[], database_url=postgres_url), env={})
            now = T0 + dt.timedelta(days=1000)
            assert apply_retention(session, settings, now).raw_purged == 3
    finally:
        engine.dispose()



def test_daily_housekeeping_purges_raw_mail_and_scrubs_it_from_disk(db, tmp_path) -> None:
    """The worker's daily job: retention purges the raw bytes, then the SQLite file is
    rewritten, so a purged original cannot be read back from free pages or the WAL."""
    from intake.clock import FixedClock
    from intake.worker import _housekeeping_job

    path, engine, sessions = db
    plain = RawCipher()
    with sessions.begin() as session:
        add_person(session, plain, "zanele.okafor@example.nhs.uk", "Zanele Okafor")
    assert b"CV Zanele" in _disk(path)
    settings = load_settings(write_config(tmp_path / "cfg", mailboxes=[], database_url=f"sqlite:///{path}"), env={})
    ports = type("P", (), {"clock": FixedClock(T0 + dt.timedelta(days=1000))})()
    _housekeeping_job(sessions, settings, ports)
    # Checked while the worker's connections are still open, as they are in production.
    assert b"CV Zanele" not in _disk(path)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(RawMessageRow)) == 0
