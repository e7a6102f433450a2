"""The daily digest: counts per coordinator as Outbox rows, no personal details, no double counting."""

from __future__ import annotations

import datetime as dt
import email

from sqlalchemy import select

from intake.clock import FixedClock
from tests.support.config import write_config


def _setup(tmp_path):  # type: ignore[no-untyped-def]
    from intake.config import load_settings
    from intake.db import make_engine, make_sessionmaker, upgrade
    from intake.users import add_user

    settings = load_settings(write_config(tmp_path, mailboxes=[], sections={"web": {"base_url": "https://intake.example.nhs.uk"}}), env={})
    upgrade(settings["database.url"])
    sessions = make_sessionmaker(make_engine(settings["database.url"]))
    codes = [g.code for g in settings.groups]
    with sessions.begin() as s:
        add_user(s, "swig1@example.org", "long-password-1", role="coordinator", groups=["SWIG"], known_groups=codes)
        add_user(s, "both@example.org", "long-password-2", role="coordinator", groups=["SWIG", "SDIG"], known_groups=codes)
        gone = add_user(s, "gone@example.org", "long-password-3", role="coordinator", groups=["SWIG"], known_groups=codes)
        gone.active = False
        add_user(s, "admin@example.org", "long-password-4", role="admin", known_groups=codes)
    return settings, sessions


def _application(session, group: str, name: str, created: dt.datetime, follow_up_at: dt.datetime | None = None) -> None:
    from intake.models import Application, Message

    app = Application(group_code=group, name=name, email=f"{name.split()[0].lower()}@nhs.example", received_at=created,
                      created_at=created)
    session.add(app)
    if follow_up_at:
        app.messages.append(Message(message_id=f"<f-{name}>", message_id_key=f"f-{name}", content_hash=f"h-{name}",
                                    mailbox="swig", kind="follow_up", received_at=follow_up_at, fetched_at=follow_up_at))


def test_digest_counts_new_applications_and_follow_ups_per_group(tmp_path):
    from intake.digest import enqueue_digests
    from intake.models import JobRun, Outbox

    settings, sessions = _setup(tmp_path)
    clock = FixedClock(dt.datetime(2030, 3, 4, 8, 0, tzinfo=dt.timezone.utc))
    with sessions.begin() as s:
        _application(s, "SWIG", "Olivia Old", clock.now() - dt.timedelta(days=3))  # before the window
        _application(s, "SWIG", "Nadia New", clock.now() - dt.timedelta(hours=5))
        _application(s, "SWIG", "Fiona Followup", clock.now() - dt.timedelta(days=10), follow_up_at=clock.now() - dt.timedelta(hours=2))
        _application(s, "SDIG", "Sunil Sdig", clock.now() - dt.timedelta(hours=1))
    with sessions.begin() as s:
        assert enqueue_digests(s, settings, clock) == 3
    with sessions() as s:
        rows = list(s.scalars(select(Outbox).order_by(Outbox.to_address, Outbox.id)))
        assert [(r.to_address, r.group_codes, r.kind, r.status) for r in rows] == [
            ("both@example.org", ["SWIG"], "digest", "pending"), ("both@example.org", ["SDIG"], "digest", "pending"),
            ("swig1@example.org", ["SWIG"], "digest", "pending")]
        swig = email.message_from_bytes(rows[-1].body)
        body = swig.get_payload(decode=True).decode()
        assert swig["Subject"] == "SWIG: 1 new application, 1 follow-up"
        assert swig["Auto-Submitted"] == "auto-generated"
        assert "https://intake.example.nhs.uk/queues/SWIG?status=new" in body
        for personal in ("Nadia", "Fiona", "nadia@", "fiona@", "Sunil"):
            assert personal not in body and personal not in swig["Subject"]
        assert s.get(JobRun, "digest").last_run_at is not None

    # The next day: only what arrived since the last run counts; nothing new, nothing sent.
    clock.advance(days=1)
    with sessions.begin() as s:
        assert enqueue_digests(s, settings, clock) == 0
        _application(s, "SDIG", "Later Person", clock.now() + dt.timedelta(minutes=5))
    clock.advance(hours=1)
    with sessions.begin() as s:
        assert enqueue_digests(s, settings, clock) == 1
    with sessions() as s:
        last = s.scalars(select(Outbox).order_by(Outbox.id.desc())).first()
        assert (last.to_address, last.subject) == ("both@example.org", "SDIG: 1 new application, 0 follow-ups")


def test_digest_settings_are_declared_off_by_default(tmp_path):
    from intake.config import load_settings

    settings = load_settings(write_config(tmp_path, mailboxes=[]), env={})
    assert settings["digest.enabled"] is False and settings["digest.time"] == "08:00"


def test_digest_reminds_of_applications_that_need_attention_until_someone_acts(tmp_path):
    from intake.digest import enqueue_digests
    from intake.models import Application, Outbox

    settings, sessions = _setup(tmp_path)
    clock = FixedClock(dt.datetime(2030, 3, 4, 8, 0, tzinfo=dt.timezone.utc))
    old = clock.now() - dt.timedelta(days=20)
    with sessions.begin() as s:
        _application(s, "SWIG", "Anna Answered", old)
        _application(s, "SWIG", "Ben Answered", old)
        _application(s, "SWIG", "Quiet Quentin", old)
        _application(s, "SDIG", "Dina Merged", old)
        s.flush()
        for app in s.scalars(select(Application)):
            app.needs_attention = app.name != "Quiet Quentin"
        merged = s.scalar(select(Application).where(Application.name == "Dina Merged"))
        merged.merged_into_id = s.scalar(select(Application.id).where(Application.name == "Anna Answered"))
    # Nothing arrived in the window, but two SWIG applicants wait for an answer.
    with sessions.begin() as s:
        assert enqueue_digests(s, settings, clock) == 2  # swig1 and both; the merged SDIG one does not count
    with sessions() as s:
        rows = list(s.scalars(select(Outbox).order_by(Outbox.to_address)))
        assert {(r.to_address, r.group_codes[0]) for r in rows} == {("swig1@example.org", "SWIG"), ("both@example.org", "SWIG")}
        msg = email.message_from_bytes(rows[-1].body)
        body = msg.get_payload(decode=True).decode()
        assert msg["Subject"] == "SWIG: 0 new applications, 0 follow-ups, 2 need attention"
        assert 'Waiting for you now: 2 applications marked "needs attention"\n' in body
        assert "https://intake.example.nhs.uk/#attention" in body
        assert "Anna" not in body and "Ben" not in body

    # A coordinator answers one of them; the next day's reminder counts only the other.
    with sessions.begin() as s:
        s.scalar(select(Application).where(Application.name == "Anna Answered")).needs_attention = False
    clock.advance(days=1)
    with sessions.begin() as s:
        assert enqueue_digests(s, settings, clock) == 2
    with sessions() as s:
        last = s.scalars(select(Outbox).order_by(Outbox.id.desc())).first()
        assert last.subject == "SWIG: 0 new applications, 0 follow-ups, 1 needs attention"
    with sessions.begin() as s:
        s.scalar(select(Application).where(Application.name == "Ben Answered")).needs_attention = False
    clock.advance(days=1)
    with sessions.begin() as s:
        assert enqueue_digests(s, settings, clock) == 0
