"""intake.smtp against a real aiosmtpd server: security modes, AUTH, replies, reconnection."""

from __future__ import annotations

import pytest

from intake.config import load_settings
from intake.errors import PermanentDeliveryError, TemporaryDeliveryError
from intake.smtp import SmtpSender, check_smtp
from tests.servers.smtp import SmtpServer
from tests.support.config import write_config

MESSAGE = b"From: blfi@example.org\nTo: jane@example.nhs.uk\nSubject: hello\n\nbody line\n"


def settings_for(tmp_path, port: int, **smtp):  # type: ignore[no-untyped-def]
    return load_settings(write_config(tmp_path, mailboxes=[], smtp_port=port, sections={"smtp": {"timeout": 5, **smtp}}),
                         env={"TEST_SMTP_PASSWORD": "s3cret"})


@pytest.fixture
def server_factory():
    servers: list[SmtpServer] = []

    def make(**kwargs) -> SmtpServer:  # type: ignore[no-untyped-def]
        servers.append(SmtpServer(**kwargs).start())
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


def test_plain_send_reuses_one_connection_and_uses_crlf(tmp_path, smtp_server) -> None:
    settings = settings_for(tmp_path, smtp_server.port)
    with SmtpSender(settings) as sender:
        first = sender.send("blfi@example.org", "jane@example.nhs.uk", MESSAGE)
        connection = sender._smtp
        sender.send("blfi@example.org", "sam@example.nhs.uk", MESSAGE)
        assert sender._smtp is connection  # one connection per run
    assert first.startswith("250")
    received = smtp_server.messages
    assert [(m.mail_from, m.rcpt_tos) for m in received] == [("blfi@example.org", ["jane@example.nhs.uk"]),
                                                             ("blfi@example.org", ["sam@example.nhs.uk"])]
    assert b"Subject: hello\r\n" in received[0].data and b"body line" in received[0].data


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_tls_modes_verify_the_certificate_and_authenticate(tmp_path, server_factory, security) -> None:
    server = server_factory(security=security, auth=("blfi", "s3cret"))
    settings = settings_for(tmp_path, server.port, security=security, ca_file=server.ca_file,
                            username="blfi", password_env="TEST_SMTP_PASSWORD")
    with SmtpSender(settings) as sender:
        sender.send("blfi@example.org", "jane@example.nhs.uk", MESSAGE)
    assert [m.login for m in server.messages] == ["blfi"]
    assert check_smtp(settings)[0] is True


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_an_unverifiable_certificate_is_refused_never_downgraded(tmp_path, server_factory, security) -> None:
    server = server_factory(security=security)
    settings = settings_for(tmp_path, server.port, security=security)  # no ca_file: the test CA is unknown
    with SmtpSender(settings) as sender, pytest.raises(TemporaryDeliveryError, match="(?i)certificate"):
        sender.send("blfi@example.org", "jane@example.nhs.uk", MESSAGE)
    assert server.messages == []
    ok, detail = check_smtp(settings)
    assert not ok and "certificate" in detail.lower()


def test_starttls_required_but_not_offered_is_an_error(tmp_path, smtp_server) -> None:
    settings = settings_for(tmp_path, smtp_server.port, security="starttls")
    with SmtpSender(settings) as sender, pytest.raises(TemporaryDeliveryError, match="STARTTLS"):
        sender.send("blfi@example.org", "jane@example.nhs.uk", MESSAGE)
    assert smtp_server.messages == []


def test_wrong_password_is_a_connection_level_failure(tmp_path, server_factory) -> None:
    server = server_factory(security="starttls", auth=("blfi", "other"))
    settings = settings_for(tmp_path, server.port, security="starttls", ca_file=server.ca_file,
                            username="blfi", password_env="TEST_SMTP_PASSWORD")
    with SmtpSender(settings) as sender:
        with pytest.raises(TemporaryDeliveryError, match="refused our login") as info:
            sender.send("blfi@example.org", "jane@example.nhs.uk", MESSAGE)
        assert info.value.code == 535 and not sender.connected
    assert server.messages == [] and server.logins == []


@pytest.mark.parametrize("code, error", [(451, TemporaryDeliveryError), (452, TemporaryDeliveryError),
                                         (550, PermanentDeliveryError), (554, PermanentDeliveryError)])
def test_replies_map_to_temporary_or_permanent(tmp_path, smtp_server, code, error) -> None:
    smtp_server.fail_next(code, 1, "no thanks")
    settings = settings_for(tmp_path, smtp_server.port)
    with SmtpSender(settings) as sender:
        with pytest.raises(error) as info:
            sender.send("blfi@example.org", "jane@example.nhs.uk", MESSAGE)
        assert info.value.code == code and f"{code} no thanks" in info.value.reason
        assert sender.connected  # the connection is still good for the next message
        sender.send("blfi@example.org", "sam@example.nhs.uk", MESSAGE)
    assert [m.rcpt_tos for m in smtp_server.messages] == [["sam@example.nhs.uk"]]


def test_421_closes_the_connection_and_the_next_send_reconnects(tmp_path, smtp_server) -> None:
    smtp_server.fail_next(421, 1, "closing")
    settings = settings_for(tmp_path, smtp_server.port)
    with SmtpSender(settings) as sender:
        with pytest.raises(TemporaryDeliveryError) as info:
            sender.send("blfi@example.org", "jane@example.nhs.uk", MESSAGE)
        assert info.value.code == 421 and not sender.connected
        sender.send("blfi@example.org", "jane@example.nhs.uk", MESSAGE)
    assert len(smtp_server.messages) == 1


def test_a_connection_dropped_while_idle_is_reopened_transparently(tmp_path, smtp_server) -> None:
    settings = settings_for(tmp_path, smtp_server.port)
    with SmtpSender(settings) as sender:
        sender.send("blfi@example.org", "a@example.nhs.uk", MESSAGE)
        smtp_server.stop()   # the server restarts while we hold an idle connection
        smtp_server.start()
        sender.send("blfi@example.org", "b@example.nhs.uk", MESSAGE)
    assert [m.rcpt_tos for m in smtp_server.messages] == [["a@example.nhs.uk"], ["b@example.nhs.uk"]]


def test_a_connection_cut_during_data_is_temporary(tmp_path, smtp_server) -> None:
    smtp_server.drop_next(1)
    settings = settings_for(tmp_path, smtp_server.port)
    with SmtpSender(settings) as sender:
        with pytest.raises(TemporaryDeliveryError) as info:
            sender.send("blfi@example.org", "a@example.nhs.uk", MESSAGE)
        assert info.value.code is None and not sender.connected


def test_server_down(tmp_path, smtp_server) -> None:
    smtp_server.stop()
    settings = settings_for(tmp_path, smtp_server.port)
    with SmtpSender(settings) as sender, pytest.raises(TemporaryDeliveryError, match="cannot connect"):
        sender.send("blfi@example.org", "a@example.nhs.uk", MESSAGE)
    ok, detail = check_smtp(settings)
    assert not ok and "cannot connect" in detail
