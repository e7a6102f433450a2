"""intake.imap against a real Dovecot on loopback: security modes, errors, UIDs, fetch, move,
network faults (through a TCP proxy) and IDLE."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading

import pytest

from intake.config import MailboxConfig
from intake.domain import RawMessage
from intake.errors import FolderMissing, MailboxAuthError, MailboxUnavailable
from intake.imap import ImapMailbox, MailboxHealth, check_mailbox
from tests.servers.dovecot import Dovecot, DovecotUnavailable


def mailbox_config(port: int, user: str, password: str = "pw", **overrides: object) -> MailboxConfig:
    base = MailboxConfig(name="swig", host="127.0.0.1", port=port, security="none", ca_file="", username=user,
                         password=password, folder="INBOX", group="SWIG", move_to="", ack=True, timeout=10, enabled=True)
    return dataclasses.replace(base, **overrides)


def message(i: int, size: int = 200) -> bytes:
    """A CRLF message (what IMAP hands back byte for byte), with 8-bit text in it."""
    body = (f"Line {i} caf\u00e9 \u2013 ".encode() * (size // 20 + 1))[:size]
    return (f"From: Person {i} <p{i}@example.nhs.uk>\r\nTo: swig@example.org\r\nSubject: Interest {i}\r\n"
            f"Message-ID: <m{i}@example.nhs.uk>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n").encode() + body + b"\r\n"


@pytest.fixture
def account(dovecot, mail_account):
    user, password = mail_account()
    return user


@pytest.fixture(scope="module")
def dovecot_without_tls():
    """A second Dovecot with ssl = no: it offers no STARTTLS at all."""
    try:
        server = Dovecot(ssl=False).start()
    except DovecotUnavailable as exc:
        pytest.fail(str(exc))
    yield server
    server.cleanup()


# -- connecting ---------------------------------------------------------------------------
def test_plain_login_selects_folder(dovecot, account) -> None:
    dovecot.append(account, "INBOX", message(1))
    with ImapMailbox(mailbox_config(dovecot.port, account)) as box:
        assert box.uidvalidity == dovecot.uidvalidity(account, "INBOX")
        assert box.exists == 1
        assert {"IMAP4REV1", "IDLE", "MOVE", "UIDPLUS"} <= box.capabilities


def test_starttls_login_sends_no_credentials_in_clear(dovecot, account, tcp_proxy) -> None:
    proxy = tcp_proxy(dovecot.port)
    config = mailbox_config(proxy.port, account, "pw", security="starttls", ca_file=dovecot.ca_file)
    with ImapMailbox(config) as box:
        assert box.uidvalidity > 0
        assert "STARTTLS" not in box.capabilities  # no longer offered: we are inside TLS
    sent = proxy.client_bytes
    assert b"STARTTLS" in sent
    assert account.encode() not in sent and b"LOGIN" not in sent


def test_implicit_tls_login(dovecot, account) -> None:
    config = mailbox_config(dovecot.tls_port, account, security="tls", ca_file=dovecot.ca_file)
    with ImapMailbox(config) as box:
        assert box.uidvalidity == dovecot.uidvalidity(account, "INBOX")


def test_localhost_name_verifies_against_certificate(dovecot, account) -> None:
    config = mailbox_config(dovecot.tls_port, account, host="localhost", security="tls", ca_file=dovecot.ca_file)
    assert check_mailbox(config).ok


@pytest.mark.parametrize("security,port_attr", [("tls", "tls_port"), ("starttls", "port")])
def test_certificate_that_does_not_verify_is_refused(dovecot, account, security, port_attr) -> None:
    port = getattr(dovecot, port_attr)
    config = mailbox_config(port, account, security=security, ca_file="")  # system CAs do not know our test CA
    with pytest.raises(MailboxUnavailable) as caught:
        ImapMailbox(config).__enter__()
    assert f"127.0.0.1:{port}" in caught.value.reason
    assert "certificate" in caught.value.reason.lower()


def test_starttls_missing_on_server_fails_instead_of_downgrading(dovecot_without_tls, tcp_proxy) -> None:
    user = dovecot_without_tls.add_user("plain@example.org", "secret-pw")
    proxy = tcp_proxy(dovecot_without_tls.port)
    config = mailbox_config(proxy.port, user, "secret-pw", security="starttls")
    with pytest.raises(MailboxUnavailable) as caught:
        with ImapMailbox(config):
            pass
    assert "STARTTLS" in caught.value.reason and f"127.0.0.1:{proxy.port}" in caught.value.reason
    assert proxy.connections == 1
    assert b"LOGIN" not in proxy.client_bytes and b"secret-pw" not in proxy.client_bytes
    # The same server is fine when plain text is what was configured.
    assert check_mailbox(mailbox_config(dovecot_without_tls.port, user, "secret-pw")).ok


def test_wrong_password_is_an_auth_error(dovecot, account) -> None:
    with pytest.raises(MailboxAuthError) as caught:
        with ImapMailbox(mailbox_config(dovecot.port, account, "wrong")):
            pass
    assert account in caught.value.reason and f"127.0.0.1:{dovecot.port}" in caught.value.reason


def test_unknown_user_is_an_auth_error(dovecot) -> None:
    with pytest.raises(MailboxAuthError):
        with ImapMailbox(mailbox_config(dovecot.port, "nobody-here@example.org")):
            pass


def test_missing_folder(dovecot, account) -> None:
    with pytest.raises(FolderMissing) as caught:
        with ImapMailbox(mailbox_config(dovecot.port, account, folder="NoSuchFolder")):
            pass
    assert "NoSuchFolder" in caught.value.reason


def test_stopped_server_is_unavailable_and_recovers_after_restart(tmp_path) -> None:
    server = Dovecot().start()
    try:
        user = server.add_user("restart@example.org")
        server.append(user, "INBOX", message(1))
        config = mailbox_config(server.port, user)
        assert check_mailbox(config).ok
        server.kill()
        with pytest.raises(MailboxUnavailable) as caught:
            with ImapMailbox(config):
                pass
        assert f"127.0.0.1:{server.port}" in caught.value.reason
        server.start()
        with ImapMailbox(config) as box:
            assert box.uids_after(0) == [1]
    finally:
        server.cleanup()


def test_check_mailbox_reports_health(dovecot, account) -> None:
    dovecot.append(account, "INBOX", message(1))
    dovecot.append(account, "INBOX", message(2))
    health = check_mailbox(mailbox_config(dovecot.port, account))
    assert health == MailboxHealth("swig", True, health.detail, dovecot.uidvalidity(account, "INBOX"), 2)
    failed = check_mailbox(mailbox_config(dovecot.port, account, "wrong"))
    assert not failed.ok and failed.uidvalidity is None and "refused" in failed.detail


# -- reading ------------------------------------------------------------------------------
def test_uids_after_filters_the_star_quirk(dovecot, account) -> None:
    with ImapMailbox(mailbox_config(dovecot.port, account)) as box:
        assert box.uids_after(0) == []
    dovecot.append_many(account, "INBOX", [message(i) for i in range(3)])
    with ImapMailbox(mailbox_config(dovecot.port, account)) as box:
        assert box.uids_after(0) == [1, 2, 3]
        assert box.uids_after(1) == [2, 3]
        # "UID SEARCH UID 4:*" matches UID 3 (the highest): it must not come back.
        assert box.uids_after(3) == []
        assert box.uids_after(100) == []


def test_fetch_500_in_batches_returns_exact_bytes_in_uid_order(dovecot, account, tcp_proxy) -> None:
    datas = [message(i, size=100 + (i * 37) % 3000) for i in range(500)]
    uids = dovecot.append_many(account, "INBOX", datas)
    proxy = tcp_proxy(dovecot.port)
    with ImapMailbox(mailbox_config(proxy.port, account)) as box:
        fetched = list(box.fetch(list(reversed(uids)), batch_size=200))
    assert [m.ref.uid for m in fetched] == uids
    assert [m.data for m in fetched] == datas
    assert {m.ref.mailbox for m in fetched} == {"swig"}
    assert {m.ref.uidvalidity for m in fetched} == {dovecot.uidvalidity(account, "INBOX")}
    assert proxy.client_bytes.count(b"UID FETCH") == 3  # 200 + 200 + 100


def test_fetch_gives_internal_date_as_aware_datetime(dovecot, account) -> None:
    when = dt.datetime(2026, 3, 4, 9, 30, 15, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    uid = dovecot.append(account, "INBOX", message(1), internal_date=when)
    with ImapMailbox(mailbox_config(dovecot.port, account)) as box:
        (raw,) = box.fetch([uid])
    assert isinstance(raw, RawMessage)
    assert raw.internal_date == when and raw.internal_date.tzinfo is not None


def test_fetch_does_not_set_seen(dovecot, account) -> None:
    uids = dovecot.append_many(account, "INBOX", [message(1), message(2)])
    dovecot.append(account, "INBOX", message(3), flags=["\\Flagged"])
    with ImapMailbox(mailbox_config(dovecot.port, account), readonly=False) as box:  # read-write: PEEK matters
        assert len(list(box.fetch(box.uids_after(0)))) == 3
    flags = dovecot.flags(account, "INBOX")
    assert all("\\Seen" not in f for f in flags.values())
    assert flags[uids[0]] == frozenset() and "\\Flagged" in flags[3]


def test_fetch_skips_uids_that_vanished(dovecot, account) -> None:
    uids = dovecot.append_many(account, "INBOX", [message(i) for i in range(3)])
    with ImapMailbox(mailbox_config(dovecot.port, account)) as box:
        found = box.uids_after(0)
        with dovecot.client(account) as other:  # another client expunges one meanwhile
            other.select_folder("INBOX")
            other.delete_messages([uids[1]])
            other.expunge()
        fetched = [m.ref.uid for m in box.fetch(found + [999])]
    assert fetched == [uids[0], uids[2]]


def test_uidvalidity_change_is_visible(dovecot, account) -> None:
    dovecot.append_many(account, "INBOX", [message(1), message(2)])
    with ImapMailbox(mailbox_config(dovecot.port, account)) as box:
        before = box.uidvalidity
    dovecot.recreate_folder_with_new_uidvalidity(account, "INBOX")
    with ImapMailbox(mailbox_config(dovecot.port, account)) as box:
        assert box.uidvalidity != before
        fetched = list(box.fetch(box.uids_after(0)))
    assert [m.data for m in fetched] == [message(1), message(2)]
    assert {m.ref.uidvalidity for m in fetched} == {box.uidvalidity}


# -- changing -----------------------------------------------------------------------------
def test_move_creates_folder_and_moves(dovecot, account) -> None:
    uids = dovecot.append_many(account, "INBOX", [message(i) for i in range(4)])
    with ImapMailbox(mailbox_config(dovecot.port, account), readonly=False) as box:
        box.move(uids[:3], "Processed/2026")
        assert box.uids_after(0) == [uids[3]]
    assert dovecot.uids(account, "INBOX") == [uids[3]]
    assert dovecot.fetch_all(account, "Processed/2026") == [message(i) for i in range(3)]


def test_move_without_move_capability_copies_and_expunges(dovecot, account) -> None:
    uids = dovecot.append_many(account, "INBOX", [message(i) for i in range(3)])
    dovecot.append(account, "Done", message(99))  # the folder exists already
    with ImapMailbox(mailbox_config(dovecot.port, account), readonly=False) as box:
        box.capabilities = box.capabilities - {"MOVE"}  # as on a server without RFC 6851
        box.move([uids[0], uids[2]], "Done")
    assert dovecot.uids(account, "INBOX") == [uids[1]]
    assert dovecot.fetch_all(account, "Done") == [message(99), message(0), message(2)]


def test_move_needs_a_writable_session(dovecot, account) -> None:
    uid = dovecot.append(account, "INBOX", message(1))
    with ImapMailbox(mailbox_config(dovecot.port, account)) as box:
        with pytest.raises(ValueError, match="read-only"):
            box.move([uid], "Processed")
    assert dovecot.uids(account, "INBOX") == [uid]


def test_delete_expunges_only_those_uids(dovecot, account) -> None:
    uids = dovecot.append_many(account, "INBOX", [message(i) for i in range(3)])
    with dovecot.client(account) as other:  # someone else's \Deleted mail must survive
        other.select_folder("INBOX")
        other.add_flags([uids[2]], ["\\Deleted"])
    with ImapMailbox(mailbox_config(dovecot.port, account), readonly=False) as box:
        box.delete([uids[0]])
    assert dovecot.uids(account, "INBOX") == uids[1:]


# -- network faults -----------------------------------------------------------------------
def test_connection_cut_mid_fetch(dovecot, account, tcp_proxy) -> None:
    uids = dovecot.append_many(account, "INBOX", [message(i, size=2000) for i in range(300)])
    proxy = tcp_proxy(dovecot.port)
    got: list[int] = []
    with pytest.raises(MailboxUnavailable) as caught:
        with ImapMailbox(mailbox_config(proxy.port, account)) as box:
            proxy.cut_after(100_000)  # half-way through the first batch's reply
            for raw in box.fetch(uids, batch_size=100):
                got.append(raw.ref.uid)
    assert got == []  # a batch is only handed out whole
    assert f"127.0.0.1:{proxy.port}" in caught.value.reason


def test_connection_cut_between_batches(dovecot, account, tcp_proxy) -> None:
    uids = dovecot.append_many(account, "INBOX", [message(i) for i in range(30)])
    proxy = tcp_proxy(dovecot.port)
    got: list[int] = []
    with pytest.raises(MailboxUnavailable):
        with ImapMailbox(mailbox_config(proxy.port, account)) as box:
            for raw in box.fetch(uids, batch_size=10):
                got.append(raw.ref.uid)
                if len(got) == 10:
                    proxy.cut()
    assert got == uids[:10]


def test_stalled_server_times_out(dovecot, account, tcp_proxy) -> None:
    dovecot.append(account, "INBOX", message(1))
    proxy = tcp_proxy(dovecot.port)
    with pytest.raises(MailboxUnavailable) as caught:
        with ImapMailbox(mailbox_config(proxy.port, account, timeout=1)) as box:
            proxy.stall()
            box.uids_after(0)
    assert "timed out" in caught.value.reason


def test_stalled_greeting_times_out(dovecot, account, tcp_proxy) -> None:
    proxy = tcp_proxy(dovecot.port)
    proxy.stall()
    health = check_mailbox(mailbox_config(proxy.port, account, timeout=1))
    assert not health.ok and f"127.0.0.1:{proxy.port}" in health.detail


# -- IDLE -----------------------------------------------------------------------------------
def test_idle_wait_wakes_on_new_mail(dovecot, account) -> None:
    dovecot.append(account, "INBOX", message(1))
    with ImapMailbox(mailbox_config(dovecot.port, account)) as box:
        # Deliver from another connection once this one is idling.
        sender = threading.Timer(0.3, dovecot.append, args=(account, "INBOX", message(2)))
        sender.start()
        try:
            assert box.idle_wait(timeout=20) is True
        finally:
            sender.join()
        assert box.uids_after(1) == [2]  # the session is usable after IDLE


def test_idle_wait_keeps_waiting_through_other_notifications(dovecot, account) -> None:
    uid = dovecot.append(account, "INBOX", message(1))

    def flag_then_deliver() -> None:
        with dovecot.client(account) as other:  # a flag change arrives first, as "* 1 FETCH"
            other.select_folder("INBOX")
            other.add_flags([uid], ["\\Flagged"])
            event.wait(0.5)
        dovecot.append(account, "INBOX", message(2))

    event = threading.Event()
    with ImapMailbox(mailbox_config(dovecot.port, account)) as box:
        worker = threading.Timer(0.2, flag_then_deliver)
        worker.start()
        try:
            assert box.idle_wait(timeout=20) is True
        finally:
            worker.join()
    assert dovecot.flags(account, "INBOX")[uid] == frozenset({"\\Flagged"})


def test_idle_wait_times_out_without_mail(dovecot, account) -> None:
    with ImapMailbox(mailbox_config(dovecot.port, account)) as box:
        assert box.idle_wait(timeout=0.3) is False
        assert box.idle_wait(timeout=0.3) is False  # IDLE was left cleanly: it can start again
        assert box.uids_after(0) == []


def test_idle_wait_on_dropped_connection_is_unavailable(dovecot, account, tcp_proxy) -> None:
    proxy = tcp_proxy(dovecot.port)
    with pytest.raises(MailboxUnavailable):
        with ImapMailbox(mailbox_config(proxy.port, account)) as box:
            threading.Timer(0.2, proxy.cut).start()
            box.idle_wait(timeout=20)
