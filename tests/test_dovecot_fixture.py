"""The test servers themselves: the Dovecot helper and the TCP fault proxy do what other
tests rely on them to do."""

from __future__ import annotations

import datetime as dt
import socket

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from tests.servers.dovecot import Dovecot, DovecotUnavailable


def mail(i: int) -> bytes:
    return f"Subject: fixture {i}\r\nMessage-ID: <f{i}@example.org>\r\n\r\nbody {i}\r\n".encode()


def login(port: int, user: str, password: str) -> IMAPClient:
    client = IMAPClient("127.0.0.1", port=port, ssl=False, timeout=10)
    client.login(user, password)
    return client


def test_missing_dovecot_is_a_clear_error_not_a_skip(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(DovecotUnavailable, match="make test"):
        Dovecot()


def test_added_user_logs_in_at_once_with_own_password(dovecot) -> None:
    for i in range(5):  # users created and used within the same second
        user = dovecot.add_user(f"own{i}@example.org", f"secret{i}")
        with login(dovecot.port, user, f"secret{i}") as client:
            assert client.select_folder("INBOX")[b"EXISTS"] == 0
    # (Each refused login costs 0.5 s: Dovecot batches auth failures on a timer.)
    with pytest.raises(LoginError):
        login(dovecot.port, "own0@example.org", "pw")


def test_mail_account_gives_distinct_users(mail_account) -> None:
    (a, pa), (b, pb) = mail_account(), mail_account("swig", "other")
    assert a != b and pa == "pw" and pb == "other" and b.startswith("swig")


def test_append_returns_uid_and_keeps_flags_and_date(dovecot, mail_account) -> None:
    user, _ = mail_account()
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    assert dovecot.append(user, "INBOX", mail(1)) == 1
    assert dovecot.append(user, "Archive/2026", mail(2), flags=["\\Seen"], internal_date=when) == 1
    assert dovecot.uids(user, "Archive/2026") == [1]
    assert dovecot.flags(user, "Archive/2026") == {1: frozenset({"\\Seen"})}
    with dovecot.client(user) as client:
        client.normalise_times = False
        client.select_folder("Archive/2026", readonly=True)
        assert client.fetch([1], ["INTERNALDATE"])[1][b"INTERNALDATE"] == when


def test_append_many_and_fetch_all(dovecot, mail_account) -> None:
    user, _ = mail_account()
    uids = dovecot.append_many(user, "INBOX", [mail(i) for i in range(250)])
    assert uids == list(range(1, 251))
    assert dovecot.fetch_all(user, "INBOX") == [mail(i) for i in range(250)]


def test_delete_folder(dovecot, mail_account) -> None:
    user, _ = mail_account()
    dovecot.append(user, "Old", mail(1))
    dovecot.append(user, "INBOX", mail(2))
    dovecot.delete_folder(user, "Old")
    dovecot.delete_folder(user, "INBOX")  # INBOX is emptied, not removed
    assert dovecot.uids(user, "Old") == [] and dovecot.uids(user, "INBOX") == []
    with dovecot.client(user) as client:
        assert not client.folder_exists("Old") and client.folder_exists("INBOX")


@pytest.mark.parametrize("folder", ["INBOX", "Applications"])
def test_recreate_folder_changes_uidvalidity_and_keeps_mail(dovecot, mail_account, folder) -> None:
    user, _ = mail_account()
    dovecot.append_many(user, folder, [mail(1), mail(2)])
    before = dovecot.uidvalidity(user, folder)
    dovecot.recreate_folder_with_new_uidvalidity(user, folder)
    assert dovecot.uidvalidity(user, folder) != before
    assert dovecot.fetch_all(user, folder) == [mail(1), mail(2)]
    assert len(dovecot.uids(user, folder)) == 2


def test_tls_ports_verify_with_ca_file(dovecot) -> None:
    import ssl

    context = ssl.create_default_context(cafile=dovecot.ca_file)
    with IMAPClient("127.0.0.1", port=dovecot.tls_port, ssl=True, ssl_context=context, timeout=10) as client:
        assert client.welcome.startswith(b"* OK")
    with IMAPClient("localhost", port=dovecot.port, ssl=False, timeout=10) as client:
        assert client.has_capability("STARTTLS")
        client.starttls(ssl.create_default_context(cafile=dovecot.ca_file))


def test_stop_and_start_keep_ports_and_mail() -> None:
    server = Dovecot().start()
    try:
        user = server.add_user("keep@example.org", "pw2")
        server.append(user, "INBOX", mail(1))
        port = server.port
        server.stop()
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0
        server.start()
        assert server.port == port
        assert server.fetch_all(user, "INBOX") == [mail(1)]
        assert "Login: user=<keep@example.org>" in server.logs()
    finally:
        server.cleanup()
    assert not server.dir.exists()


def test_server_without_tls_offers_no_starttls() -> None:
    server = Dovecot(ssl=False).start()
    try:
        with IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=10) as client:
            assert not client.has_capability("STARTTLS")
        assert server.ca_file == ""
    finally:
        server.cleanup()


# -- the TCP proxy --------------------------------------------------------------------------
def test_proxy_forwards_and_records(dovecot, mail_account, tcp_proxy) -> None:
    user, password = mail_account()
    proxy = tcp_proxy(dovecot.port)
    with login(proxy.port, user, password) as client:
        assert client.select_folder("INBOX")[b"EXISTS"] == 0
    assert user.encode() in proxy.client_bytes and proxy.connections == 1


def test_proxy_cut_drops_current_connections_only(dovecot, mail_account, tcp_proxy) -> None:
    user, password = mail_account()
    proxy = tcp_proxy(dovecot.port)
    client = login(proxy.port, user, password)
    proxy.cut()
    with pytest.raises((OSError, IMAPClient.AbortError)):
        client.noop()
    with login(proxy.port, user, password) as again:  # new connections still work
        again.noop()


def test_proxy_stall_and_resume(dovecot, mail_account, tcp_proxy) -> None:
    user, password = mail_account()
    proxy = tcp_proxy(dovecot.port)
    client = login(proxy.port, user, password)
    proxy.stall()
    client._imap.sock.settimeout(0.3)
    with pytest.raises(OSError):  # socket.timeout: nothing comes back while stalled
        client.noop()
    proxy.resume()
    client.shutdown()
    with login(proxy.port, user, password) as again:
        again.noop()


def test_proxy_cut_after_bytes(dovecot, mail_account, tcp_proxy) -> None:
    user, password = mail_account()
    dovecot.append_many(user, "INBOX", [mail(i) * 200 for i in range(20)])
    proxy = tcp_proxy(dovecot.port)
    client = login(proxy.port, user, password)
    client.select_folder("INBOX", readonly=True)
    proxy.cut_after(5000)
    with pytest.raises((OSError, IMAPClient.AbortError)):
        client.fetch(list(range(1, 21)), ["BODY.PEEK[]"])
