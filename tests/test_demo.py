"""The built-in demo: a real IMAP server and SMTP sink on loopback, seeded with sample mail.

Clients here are the real ones (imapclient, smtplib, intake's own IMAP adapter); the
assertions are on what the servers hold and what lands on disk.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import smtplib
import socket
import threading
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from intake.classify import ClassifyContext, classify
from intake.config import load_settings
from intake.demo.imap_server import WholeResponseWriter
from intake.demo import DemoPortInUse, DemoServers, sample_messages, samples, start_demo
from intake.errors import ConfigError, IntakeError
from intake.imap import ImapMailbox
from intake.parsing import parse
from intake.routing import route
from tests.support.config import MailboxSpec, write_config

NOW = dt.datetime(2026, 3, 4, 9, 30, tzinfo=dt.timezone.utc)
PASSWORD = "demo"
SHIPPED = [("swig", "SWIG"), ("sdig", "SDIG"), ("sbameig", "SBAMEIG"), ("slgbtig", "SLGBTIG"), ("blfi", "")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_settings(directory: Path, imap_port: int, smtp_port: int, **demo: object):
    mailboxes = [MailboxSpec(name, f"{name}@example.org", PASSWORD, port=imap_port, group=group) for name, group in SHIPPED]
    path = write_config(directory, mailboxes=mailboxes, smtp_port=smtp_port,
                        sections={"demo": {"enabled": True, "smtp_sink_dir": str(directory / "sink"), **demo}})
    return load_settings(path, env={})


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> DemoServers:
    settings = demo_settings(tmp_path_factory.mktemp("demo"), free_port(), free_port())
    servers = start_demo(settings, now=NOW)
    yield servers
    servers.stop()


def connect(demo: DemoServers, user: str) -> IMAPClient:
    client = IMAPClient("127.0.0.1", port=demo.imap_port, ssl=False, timeout=5)
    client.login(user, PASSWORD)
    return client


# -- the samples themselves (pure) ------------------------------------------------------

def test_samples_are_many_distinct_and_recent():
    items = samples(NOW)
    assert 22 <= len(items) <= 30
    ids = [parse(s.raw).message_id for s in items]
    assert len(set(ids)) == len(ids)
    assert all(NOW - dt.timedelta(days=2) <= s.received < NOW for s in items)
    assert [s.received for s in items] == sorted(s.received for s in items)
    assert sample_messages(NOW) == [(s.mailbox, s.raw) for s in items]


def test_samples_cover_what_the_brief_lists():
    raws = {s.raw for s in samples(NOW)}
    text = b"\n".join(raws)
    assert b"SLGBY+IG" in text and b"BAME" in text and b"disabled colleagues network" in text.lower()
    assert b"multipart/report" in text and b"List-Id:" in text and b"application/pdf" in text
    assert b"=?utf-8?" in text.lower()  # an RFC 2047 encoded name
    html_only = [parse(r) for r in raws if b"Content-Type: text/html" in r and b"multipart" not in r]
    assert len(html_only) == 1 and "<b>express my interest</b>" in html_only[0].html


def test_each_sample_is_classified_and_routed_as_labelled():
    """The samples exercise the real classifier and router the way their labels say."""
    settings_groups = _groups()
    mailbox_group = {f"{name}@example.org": group for name, group in SHIPPED}
    ctx = ClassifyContext(own_addresses=frozenset({"blfi@example.org"}), message_id_domain="example.org",
                          known_message_ids=frozenset({"demo-02@samples.intake-demo.example"}))
    for sample in samples(NOW):
        msg = parse(sample.raw)
        verdict = classify(msg, ctx)
        assert verdict.kind.value == sample.kind, (msg.subject, verdict)
        if sample.kind == "interest":
            got = route(msg, settings_groups, mailbox_group=mailbox_group[sample.mailbox])
            assert got.groups == sample.groups, (msg.subject, got)


def _groups():
    from intake.groups import load_groups
    from tests.support.config import REPO

    return load_groups(REPO / "config" / "groups.toml")


# -- the IMAP server ---------------------------------------------------------------------

def test_each_mailbox_holds_its_seeded_mail_byte_for_byte(demo):
    expected = collections.defaultdict(list)
    for user, raw in sample_messages(NOW):
        expected[user].append(raw)
    assert demo.seeded == len(sample_messages(NOW))
    assert set(expected) == set(demo.accounts)
    for user in demo.accounts:
        client = connect(demo, user)
        try:
            info = client.select_folder("INBOX", readonly=True)
            assert info[b"EXISTS"] == len(expected[user])
            uids = client.search(["ALL"])
            fetched = client.fetch(uids, ["BODY.PEEK[]", "INTERNALDATE", "RFC822.SIZE"])
            bodies = [fetched[u][b"BODY[]"] for u in sorted(uids)]
            assert bodies == expected[user]
            assert all(fetched[u][b"RFC822.SIZE"] == len(fetched[u][b"BODY[]"]) for u in uids)
            assert all(fetched[u][b"INTERNALDATE"] is not None for u in uids)
            assert client.search(["UNSEEN"]) == uids  # PEEK left \Seen alone
        finally:
            client.logout()


def test_wrong_password_and_unknown_user_are_refused(demo):
    for user, password in (("swig@example.org", "wrong"), ("nobody@example.org", PASSWORD)):
        client = IMAPClient("127.0.0.1", port=demo.imap_port, ssl=False, timeout=5)
        with pytest.raises(LoginError):
            client.login(user, password)
        client.shutdown()


def test_mailboxes_are_separate(demo):
    swig, sdig = connect(demo, "swig@example.org"), connect(demo, "sdig@example.org")
    try:
        swig_subjects = _subjects(swig)
        sdig_subjects = _subjects(sdig)
        assert swig_subjects and sdig_subjects and not set(swig_subjects) & set(sdig_subjects)
    finally:
        swig.logout()
        sdig.logout()


def _subjects(client: IMAPClient) -> list[bytes]:
    client.select_folder("INBOX", readonly=True)
    uids = client.search(["ALL"])
    return [v[b"ENVELOPE"].subject for v in client.fetch(uids, ["ENVELOPE"]).values()]


def test_uid_search_range_from_a_checkpoint(demo):
    client = connect(demo, "blfi@example.org")
    try:
        client.select_folder("INBOX", readonly=True)
        uids = sorted(client.search(["ALL"]))
        checkpoint = uids[len(uids) // 2]
        assert sorted(client.search(["UID", f"{checkpoint + 1}:*"])) == [u for u in uids if u > checkpoint]
    finally:
        client.logout()


def test_append_then_move_to_a_new_folder(demo, tmp_path):
    client = connect(demo, "slgbtig@example.org")
    raw = _message("late interest", "slgbtig@example.org")
    try:
        before = client.select_folder("INBOX")[b"EXISTS"]
        client.append("INBOX", raw)
        client.select_folder("INBOX")
        new = [u for u in client.search(["ALL"]) if client.fetch([u], ["BODY.PEEK[]"])[u][b"BODY[]"] == raw]
        assert len(new) == 1
        client.create_folder("Processed")
        client.move(new, "Processed")
        assert client.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"] == before
        client.select_folder("Processed", readonly=True)
        moved = client.search(["ALL"])
        assert [client.fetch(moved, ["BODY.PEEK[]"])[u][b"BODY[]"] for u in moved] == [raw]
    finally:
        client.logout()


def test_idle_reports_exists_after_an_append_elsewhere(demo):
    watcher, writer = connect(demo, "sdig@example.org"), connect(demo, "sdig@example.org")
    try:
        watcher.select_folder("INBOX")
        watcher.idle()
        writer.append("INBOX", _message("while you were idling", "sdig@example.org"))
        responses: list = []
        for _ in range(5):  # idle_check may first return keep-alive chatter
            responses += watcher.idle_check(timeout=2)
            if any(isinstance(r, tuple) and r[1] == b"EXISTS" for r in responses):
                break
        watcher.idle_done()
        assert any(isinstance(r, tuple) and r[1] == b"EXISTS" for r in responses), responses
    finally:
        watcher.logout()
        writer.logout()


def test_intakes_own_imap_adapter_reads_and_moves(demo, tmp_path):
    """What the worker does: UIDs after a checkpoint, FETCH in batches, MOVE when done."""
    settings = demo_settings(tmp_path, demo.imap_port, demo.smtp_port)
    config = next(m for m in settings.mailboxes if m.name == "sbameig")
    expected = [raw for user, raw in sample_messages(NOW) if user == "sbameig@example.org"]
    with ImapMailbox(config, readonly=False) as box:
        uids = box.uids_after(0)
        got = [m.data for m in box.fetch(uids, batch_size=2)]
        assert got[: len(expected)] == expected
        assert box.uids_after(uids[-1]) == []
        box.move(uids[:1], "Done")
    with ImapMailbox(config) as box:
        assert box.uids_after(0) == uids[1:]


# -- the SMTP sink -------------------------------------------------------------------------

def test_sink_writes_each_message_as_an_eml_file(demo, caplog):
    message = EmailMessage()
    message["From"] = "blfi@example.org"
    message["To"] = "applicant@nhs.example.net"
    message["Subject"] = "Thank you for your interest – SWIG"
    message.set_content("We have your expression of interest.")
    before = set(demo.sink_dir.glob("*.eml"))
    with caplog.at_level(logging.INFO, logger="intake.demo.smtp_sink"):
        with smtplib.SMTP("127.0.0.1", demo.smtp_port, timeout=5) as smtp:
            refused = smtp.send_message(message)
    assert refused == {}
    written = set(demo.sink_dir.glob("*.eml")) - before
    assert len(written) == 1
    data = written.pop().read_bytes()
    assert b"We have your expression of interest." in data and b"applicant@nhs.example.net" in data
    assert "demo sink received: To=applicant@nhs.example.net, Subject=Thank you for your interest – SWIG" in caplog.text
    assert logging.getLogger("mail.log").getEffectiveLevel() >= logging.WARNING


# -- lifecycle -----------------------------------------------------------------------------

def test_taken_port_is_a_clear_error_and_stop_frees_both_ports(tmp_path):
    imap_port, smtp_port = free_port(), free_port()
    settings = demo_settings(tmp_path, imap_port, smtp_port, seed=False)
    first = start_demo(settings)
    try:
        assert first.seeded == 0 and (first.imap_port, first.smtp_port) == (imap_port, smtp_port)
        with pytest.raises(DemoPortInUse) as caught:
            start_demo(settings)
        assert isinstance(caught.value, IntakeError)
        assert f"127.0.0.1:{imap_port}" in str(caught.value) and "already in use" in str(caught.value)
    finally:
        first.stop()
    first.stop()  # twice is harmless
    threads_before = threading.active_count()
    second = start_demo(settings, seed=True, now=NOW)
    try:
        assert second.seeded == len(sample_messages(NOW))
        client = connect(second, "blfi@example.org")
        client.logout()
    finally:
        second.stop()
    assert threading.active_count() <= threads_before


def test_smtp_port_taken_reports_smtp_and_leaves_nothing_listening(tmp_path):
    imap_port = free_port()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        settings = demo_settings(tmp_path, imap_port, blocker.getsockname()[1])
        with pytest.raises(DemoPortInUse, match="SMTP sink"):
            start_demo(settings)
    with socket.socket() as probe:  # the IMAP server started first was closed again
        probe.bind(("127.0.0.1", imap_port))


def test_nothing_starts_when_the_demo_is_disabled(tmp_path):
    settings = demo_settings(tmp_path, free_port(), free_port(), enabled=False)
    with pytest.raises(ConfigError, match="demo.enabled"):
        start_demo(settings)


def test_stop_ends_open_client_connections(tmp_path):
    """A worker left in IDLE must not keep the demo (or `intake run`'s exit) hanging."""
    settings = demo_settings(tmp_path, free_port(), free_port(), seed=False)
    servers = start_demo(settings)
    client = connect(servers, "swig@example.org")
    client.select_folder("INBOX")
    client.idle()
    servers.stop()
    sock = client.socket()
    sock.settimeout(5)
    leftover = b""
    while chunk := sock.recv(4096):  # the server's side was closed: recv ends with b""
        leftover += chunk
    assert b"EXISTS" not in leftover


def _message(subject: str, to: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Test Person <test.person@nhs.example.net>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{subject.replace(' ', '-')}-{time.monotonic_ns()}@test.example>"
    msg.set_content("Hello")
    return msg.as_bytes().replace(b"\n", b"\r\n")


def test_intakes_idle_wait_sees_new_mail_and_the_connection_survives(demo, tmp_path):
    """The worker's IDLE wait (read-only, imapclient's non-blocking reads) against pymap."""
    settings = demo_settings(tmp_path, demo.imap_port, demo.smtp_port)
    config = next(m for m in settings.mailboxes if m.name == "swig")
    with ImapMailbox(config) as box:
        last = max(box.uids_after(0))
        writer = connect(demo, "swig@example.org")
        arrival = threading.Timer(0.2, writer.append, ("INBOX", _message("arrives during idle", "swig@example.org")))
        try:
            arrival.start()
            assert box.idle_wait(5) is True
            assert len(box.uids_after(last)) == 1
        finally:
            arrival.join()
            writer.logout()


def test_responses_reach_the_socket_whole():
    """pymap writes a response in pieces; imapclient's non-blocking IDLE reads abort on a half
    line (seen in the worker under load). The demo's writer sends nothing before drain()."""

    async def scenario() -> tuple[bytes, bytes]:
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        _, plain = await asyncio.open_connection(sock=ours)
        writer = WholeResponseWriter(plain)
        writer.write(b"* 4 FETCH ")
        writer.write(b"(FLAGS ())")
        await asyncio.sleep(0.05)  # give a piece every chance to leave early
        try:
            early = theirs.recv(100)
        except BlockingIOError:
            early = b""
        writer.write(b"\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        whole = theirs.recv(100)
        writer.close()
        theirs.close()
        return early, whole

    early, whole = asyncio.run(scenario())
    assert early == b""
    assert whole == b"* 4 FETCH (FLAGS ())\r\n"
