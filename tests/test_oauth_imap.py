"""intake.imap.ImapMailbox with auth = "oauth2": a real token server, a Dovecot that only
accepts tokens, and the one-retry-with-a-fresh-token rule when a token is refused."""

from __future__ import annotations

import dataclasses

import pytest

from intake.errors import MailboxAuthError
from intake.imap import ImapMailbox, check_mailbox
from intake.oauth import device_login
from tests.test_oauth import SECRET, _approve_on_second_poll, account, imap, mailbox, oauth, sink  # noqa: F401  (fixtures)


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    # Most tests here give ImapMailbox no base_dir (the working directory is used then):
    # keep any status file it writes inside this test's folder.
    monkeypatch.chdir(tmp_path)


def config(oauth, imap, client_id, user, **changes):  # noqa: F811
    return mailbox(oauth, client_id, user, port=imap.port, **changes)


def test_imap_mailbox_signs_in_with_a_token_and_fetches(oauth, imap):  # noqa: F811
    client_id, user = account(oauth)
    imap.deliver(user, b"Subject: one\r\n\r\nx\r\n")
    with ImapMailbox(config(oauth, imap, client_id, user)) as box:
        messages = list(box.fetch(box.uids_after(0)))
    assert [m.data.split(b"\r\n")[0] for m in messages] == [b"Subject: one"]
    assert f"user=<{user}>, method=XOAUTH2" in imap.logs()


def test_refused_token_is_replaced_once_and_the_login_succeeds(oauth, imap):  # noqa: F811
    client_id, user = account(oauth)
    imap.deliver(user, b"Subject: two\r\n\r\nx\r\n")
    cfg = config(oauth, imap, client_id, user)
    with ImapMailbox(cfg):
        pass
    before = len(oauth.grants)
    oauth.expire_tokens()  # revoked early: intake still thinks its cached token is good

    with ImapMailbox(cfg) as box:
        assert len(box.uids_after(0)) == 1
    assert oauth.grants[before:] == ["client_credentials"]  # exactly one fresh token


def test_wrong_client_secret_is_a_mailbox_auth_error(oauth, imap):  # noqa: F811
    client_id, user = account(oauth)
    with pytest.raises(MailboxAuthError, match="invalid_client"):
        with ImapMailbox(config(oauth, imap, client_id, user, client_secret="wrong")):
            pass


def test_smtp_sender_sends_with_xoauth2_through_dovecot_submission(oauth, imap, sink, tmp_path):  # noqa: F811
    from intake.config import load_settings
    from intake.smtp import SmtpSender
    from tests.support.config import MailboxSpec, write_config

    client_id, user = account(oauth)
    path = write_config(tmp_path / "cfg", smtp_port=imap.submission_port, mailboxes=[MailboxSpec(
        "swig", user, "", port=imap.port, extra={
            "auth": "oauth2", "oauth_provider": "generic", "client_id": client_id, "client_secret": SECRET,
            "oauth_token_url": oauth.token_url, "oauth_ca_file": oauth.ca_file})],
        sections={"smtp": {"auth": "oauth2", "oauth_mailbox": "swig", "from_address": user}})
    subject = f"Thank you {client_id}"
    with SmtpSender(load_settings(path, env={})) as sender:
        sender.send(user, "applicant@example.net", f"Subject: {subject}\r\n\r\nReceived.\r\n".encode())
    received = [m for m in sink.messages if subject.encode() in m.data]
    assert [(m.mail_from, m.rcpt_tos) for m in received] == [(user, ["applicant@example.net"])]
    assert f"submission-login: Info: Login: user=<{user}>, method=XOAUTH2" in imap.logs()


def _signed_in_with_relative_cache(oauth, imap, config_dir):  # noqa: F811
    """A delegated mailbox whose config names `tokens/box.json` (relative), signed in once
    with the cache written under `config_dir`, as `intake auth login` does."""
    client_id, user = account(oauth, public=True)
    cfg = config(oauth, imap, client_id, user, oauth_flow="delegated", client_secret="", token_cache="tokens/box.json")
    shown: list[str] = []
    sleep, _ = _approve_on_second_poll(oauth, user, shown)
    device_login(dataclasses.replace(cfg, token_cache=str(config_dir / "tokens" / "box.json")), shown.append,
                 base_dir=config_dir, device_url=oauth.device_url, sleep=sleep)
    return cfg, user


def test_relative_token_cache_resolves_against_base_dir_not_the_working_directory(oauth, imap, tmp_path,  # noqa: F811
                                                                                  monkeypatch):
    config_dir = tmp_path / "cfg"
    cfg, user = _signed_in_with_relative_cache(oauth, imap, config_dir)
    imap.deliver(user, b"Subject: relative\r\n\r\nx\r\n")
    monkeypatch.chdir(tmp_path / "cfg" / "tokens")  # anywhere but the config folder

    with ImapMailbox(cfg, base_dir=config_dir) as box:
        assert len(box.uids_after(0)) == 1
    health = check_mailbox(cfg, base_dir=config_dir)
    assert health.ok and health.message_count == 1
    # Without it the working directory is searched, and the sign-in is not found there.
    assert "no token cache" in check_mailbox(cfg).detail


def test_the_worker_opens_mailboxes_with_the_config_folder_as_base(oauth, imap, tmp_path, monkeypatch):  # noqa: F811
    """`intake run` (worker.build_ports) resolves a relative token cache against intake.toml's folder."""
    from intake.clock import SystemClock
    from intake.config import load_settings
    from intake.worker import build_ports
    from tests.support.config import write_config

    config_dir = tmp_path / "cfg"
    settings = load_settings(write_config(config_dir, mailboxes=[]), env={})
    cfg, user = _signed_in_with_relative_cache(oauth, imap, config_dir)
    imap.deliver(user, b"Subject: from the worker\r\n\r\nx\r\n")
    monkeypatch.chdir(tmp_path)  # not the config folder

    with build_ports(settings, SystemClock()).open_mailbox(cfg) as box:
        assert len(box.uids_after(0)) == 1
