"""OAuth 2.0 sign-in for real: tokens from a local HTTPS token server, checked by Dovecot
through RFC 7662 introspection, used over IMAP (XOAUTH2) and SMTP submission (XOAUTH2)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import smtplib
import stat
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from intake.config import MailboxConfig, load_settings
from intake.errors import ConfigError, MailboxAuthError, MailboxUnavailable
from intake.oauth import (GenericTokenProvider, TokenProvider, credential_warnings, device_login,
                          status_path, token_cache_path, xoauth2_string)
from tests.servers.dovecot import DovecotUnavailable, free_port
from tests.servers.dovecot_oauth import OAuthDovecot
from tests.servers.oauth_server import OAuthServer
from tests.servers.smtp import SmtpServer
from tests.support.config import MailboxSpec, write_config

SECRET = "s3cret"


@pytest.fixture(scope="module")
def oauth():
    server = OAuthServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sink():
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def imap(oauth, sink):
    try:
        server = OAuthDovecot(oauth.introspection_url, oauth.ca_file, relay_port=sink.port).start()
    except DovecotUnavailable as exc:
        pytest.fail(str(exc))  # never a skip
    yield server
    server.cleanup()


_n = iter(range(1, 10_000))


def account(oauth: OAuthServer, *, public: bool = False) -> tuple[str, str]:
    """A fresh (client_id, mailbox address) registered with the token server."""
    n = next(_n)
    client_id, user = f"app{n}", f"group{n}@example.org"
    oauth.add_client(client_id, None if public else SECRET, mailbox=user)
    return client_id, user


def mailbox(oauth: OAuthServer, client_id: str, user: str, **changes) -> MailboxConfig:
    cfg = MailboxConfig(name=client_id, host="127.0.0.1", port=0, security="none", ca_file="", username=user,
                        password="", folder="INBOX", group="", move_to="", ack=True, timeout=30, enabled=True,
                        auth="oauth2", oauth_flow="client_credentials", oauth_provider="generic",
                        client_id=client_id, client_secret=SECRET, oauth_scope="https://outlook.office365.com/.default",
                        oauth_token_url=oauth.token_url, oauth_ca_file=oauth.ca_file)
    return dataclasses.replace(cfg, **changes)


def imap_login(server: OAuthDovecot, user: str, token: str) -> IMAPClient:
    client = IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=10)
    client.oauth2_login(user, token)
    return client


def subjects(client: IMAPClient) -> list[bytes]:
    client.select_folder("INBOX", readonly=True)
    data = client.fetch(client.search("ALL"), ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
    return [item[b"BODY[HEADER.FIELDS (SUBJECT)]"].strip() for item in data.values()]


def grants_since(oauth: OAuthServer, before: int) -> list[str]:
    return oauth.grants[before:]


# -- the SASL string ----------------------------------------------------------------------

def test_xoauth2_string_is_the_documented_format():
    assert xoauth2_string("a@example.org", "tok") == "user=a@example.org\x01auth=Bearer tok\x01\x01"


# -- client credentials (app-only) ----------------------------------------------------------

def test_client_credentials_token_logs_in_to_imap_and_reads_mail(oauth, imap, tmp_path):
    client_id, user = account(oauth)
    imap.deliver(user, b"Subject: Expression of interest\r\n\r\nPlease add me.\r\n")
    provider = TokenProvider.for_mailbox(mailbox(oauth, client_id, user), base_dir=tmp_path)
    before = len(oauth.grants)

    token = provider.token()
    with imap_login(imap, user, token) as client:
        assert subjects(client) == [b"Subject: Expression of interest"]
    assert provider.token() == token  # still valid: no second request to the token endpoint
    assert grants_since(oauth, before) == ["client_credentials"]
    assert f"user=<{user}>, method=XOAUTH2" in imap.logs()


def test_one_provider_per_mailbox_so_imap_and_smtp_share_a_token(oauth, tmp_path):
    client_id, user = account(oauth)
    cfg = mailbox(oauth, client_id, user)
    assert TokenProvider.for_mailbox(cfg, base_dir=tmp_path) is TokenProvider.for_mailbox(cfg, base_dir=tmp_path)


def test_expired_token_is_refused_and_force_refresh_gets_one_that_works(oauth, imap, tmp_path):
    client_id, user = account(oauth)
    imap.deliver(user, b"Subject: after refresh\r\n\r\nx\r\n")
    provider = TokenProvider.for_mailbox(mailbox(oauth, client_id, user), base_dir=tmp_path)
    old = provider.token()
    oauth.expire_tokens()

    with pytest.raises(LoginError, match="AUTHENTICATIONFAILED"):
        imap_login(imap, user, old)
    new = provider.token(force_refresh=True)
    assert new != old
    with imap_login(imap, user, new) as client:
        assert subjects(client) == [b"Subject: after refresh"]


def test_token_close_to_expiry_is_renewed_before_use(imap, tmp_path):
    short = OAuthServer(token_lifetime=60).start()  # inside the renewal margin at once
    try:
        short.add_client("shortapp", SECRET, mailbox="short@example.org")
        provider = TokenProvider.for_mailbox(mailbox(short, "shortapp", "short@example.org"), base_dir=tmp_path)
        first, second = provider.token(), provider.token()
        assert first != second
        assert short.grants == ["client_credentials", "client_credentials"]
    finally:
        short.stop()


def test_token_for_one_mailbox_does_not_open_another(oauth, imap, tmp_path):
    client_id, user = account(oauth)
    _, other = account(oauth)
    token = TokenProvider.for_mailbox(mailbox(oauth, client_id, user), base_dir=tmp_path).token()
    with pytest.raises(LoginError):
        imap_login(imap, other, token)


def test_wrong_client_secret_is_a_readable_auth_error_and_is_reported(oauth, tmp_path):
    client_id, user = account(oauth)
    cfg = mailbox(oauth, client_id, user, client_secret="wrong")
    with pytest.raises(MailboxAuthError) as caught:
        TokenProvider.for_mailbox(cfg, base_dir=tmp_path).token()
    reason = caught.value.reason
    assert oauth.token_url in reason and "client_credentials" in reason
    assert "HTTP 401 invalid_client" in reason and "Invalid client secret" in reason
    assert caught.value.mailbox == client_id

    warnings = credential_warnings(cfg, dt.datetime.now(dt.timezone.utc), base_dir=tmp_path)
    assert len(warnings) == 1 and "last token refresh failed" in warnings[0] and "invalid_client" in warnings[0]
    assert stat.S_IMODE(status_path(cfg, tmp_path).stat().st_mode) == 0o600

    # Once the secret is fixed, the next success clears the warning.
    TokenProvider.for_mailbox(dataclasses.replace(cfg, client_secret=SECRET), base_dir=tmp_path).token()
    assert credential_warnings(cfg, dt.datetime.now(dt.timezone.utc), base_dir=tmp_path) == []


def test_unreachable_token_endpoint_is_unavailable_not_auth(oauth, tmp_path):
    client_id, user = account(oauth)
    cfg = mailbox(oauth, client_id, user, oauth_token_url=f"https://127.0.0.1:{free_port()}/token")
    with pytest.raises(MailboxUnavailable, match="cannot reach token endpoint"):
        TokenProvider.for_mailbox(cfg, base_dir=tmp_path).token()


def test_token_endpoint_with_untrusted_certificate_is_refused(oauth, tmp_path):
    client_id, user = account(oauth)
    cfg = mailbox(oauth, client_id, user, oauth_ca_file="")  # the system CAs do not know the test CA
    with pytest.raises(MailboxUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        TokenProvider.for_mailbox(cfg, base_dir=tmp_path).token()


def test_missing_ca_file_is_a_config_error_naming_the_key(oauth, tmp_path):
    client_id, user = account(oauth)
    cfg = mailbox(oauth, client_id, user, oauth_ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match=f"mailboxes.{client_id}.oauth_ca_file"):
        TokenProvider.for_mailbox(cfg, base_dir=tmp_path).token()


# -- SMTP ------------------------------------------------------------------------------------

def test_smtp_xoauth2_submission_end_to_end(oauth, imap, sink, tmp_path):
    client_id, user = account(oauth)
    token = TokenProvider.for_mailbox(mailbox(oauth, client_id, user), base_dir=tmp_path).token()
    subject = f"Acknowledgement {client_id}"
    with smtplib.SMTP("127.0.0.1", imap.submission_port, timeout=10) as smtp:
        smtp.ehlo()
        assert "XOAUTH2" in smtp.esmtp_features["auth"].split()
        code, _ = smtp.auth("XOAUTH2", lambda challenge=None: xoauth2_string(user, token), initial_response_ok=True)
        assert code == 235
        smtp.sendmail(user, ["applicant@example.net"], f"Subject: {subject}\r\n\r\nThank you.\r\n".encode())
    received = [m for m in sink.messages if subject.encode() in m.data]
    assert len(received) == 1
    assert received[0].mail_from == user and received[0].rcpt_tos == ["applicant@example.net"]


def test_smtp_refuses_an_expired_token(oauth, imap, tmp_path):
    client_id, user = account(oauth)
    token = TokenProvider.for_mailbox(mailbox(oauth, client_id, user), base_dir=tmp_path).token()
    oauth.expire_tokens()
    with smtplib.SMTP("127.0.0.1", imap.submission_port, timeout=10) as smtp:
        smtp.ehlo()
        # After a failure Dovecot sends an error challenge; the client answers it empty.
        with pytest.raises(smtplib.SMTPAuthenticationError) as caught:
            smtp.auth("XOAUTH2", lambda challenge=None: "" if challenge else xoauth2_string(user, token),
                      initial_response_ok=True)
    assert caught.value.smtp_code == 535


# -- delegated flow (device code, rotating refresh tokens) ------------------------------------

def _approve_on_second_poll(oauth: OAuthServer, user: str, shown: list[str]):
    """The person signs in while intake is polling: the first poll sees authorization_pending."""
    calls = []

    def sleep(seconds: float) -> None:
        calls.append(seconds)
        if len(calls) == 2:
            code = shown[-1].rsplit(" ", 1)[1].rstrip(".")
            oauth.approve(code, user)

    return sleep, calls


def test_delegated_device_login_then_refresh_rotates_and_saves_the_cache(oauth, imap, tmp_path):
    client_id, user = account(oauth, public=True)
    cfg = mailbox(oauth, client_id, user, oauth_flow="delegated", client_secret="")
    shown: list[str] = []
    sleep, polls = _approve_on_second_poll(oauth, user, shown)

    assert device_login(cfg, shown.append, base_dir=tmp_path, device_url=oauth.device_url, sleep=sleep) == user
    assert "enter the code" in shown[0] and len(polls) == 2
    cache_file = token_cache_path(cfg, tmp_path)
    assert cache_file == tmp_path / "var" / "tokens" / f"{client_id}.json"
    assert stat.S_IMODE(cache_file.stat().st_mode) == 0o600
    first_refresh = json.loads(cache_file.read_text())["refresh_token"]
    assert oauth.refresh_tokens_of(user) == [first_refresh]

    provider = TokenProvider.for_mailbox(cfg, base_dir=tmp_path)
    signed_in = provider.token()  # the one the sign-in gave: no request
    oauth.expire_tokens()
    refreshed = provider.token(force_refresh=True)
    assert refreshed != signed_in
    second_refresh = json.loads(cache_file.read_text())["refresh_token"]
    assert second_refresh != first_refresh
    assert oauth.refresh_tokens_of(user) == [second_refresh]  # the first one is spent
    assert stat.S_IMODE(cache_file.stat().st_mode) == 0o600
    imap.deliver(user, b"Subject: delegated\r\n\r\nx\r\n")
    with imap_login(imap, user, refreshed) as client:
        assert subjects(client) == [b"Subject: delegated"]

    # A restart (a new provider with nothing in memory) continues from the saved cache.
    restarted = GenericTokenProvider(cfg, tmp_path)
    with imap_login(imap, user, restarted.token()) as client:
        assert subjects(client) == [b"Subject: delegated"]
    assert json.loads(cache_file.read_text())["refresh_token"] == oauth.refresh_tokens_of(user)[0] != second_refresh


def test_delegated_without_sign_in_says_to_run_auth_login(oauth, tmp_path):
    client_id, user = account(oauth, public=True)
    cfg = mailbox(oauth, client_id, user, oauth_flow="delegated", client_secret="")
    with pytest.raises(MailboxAuthError, match=f"intake auth login {client_id}"):
        TokenProvider.for_mailbox(cfg, base_dir=tmp_path).token()
    warnings = credential_warnings(cfg, dt.datetime.now(dt.timezone.utc), base_dir=tmp_path)
    assert any("not signed in" in w and f"intake auth login {client_id}" in w for w in warnings)


def test_revoked_refresh_token_is_an_auth_error_naming_the_grant(oauth, tmp_path):
    client_id, user = account(oauth, public=True)
    cfg = mailbox(oauth, client_id, user, oauth_flow="delegated", client_secret="")
    shown: list[str] = []
    sleep, _ = _approve_on_second_poll(oauth, user, shown)
    device_login(cfg, shown.append, base_dir=tmp_path, device_url=oauth.device_url, sleep=sleep)
    oauth.revoke_refresh_tokens()
    with pytest.raises(MailboxAuthError, match="refused the refresh_token grant: HTTP 400 invalid_grant"):
        TokenProvider.for_mailbox(cfg, base_dir=tmp_path).token(force_refresh=True)


def test_declined_device_sign_in_is_an_auth_error(oauth, tmp_path):
    client_id, user = account(oauth, public=True)
    cfg = mailbox(oauth, client_id, user, oauth_flow="delegated", client_secret="")
    shown: list[str] = []

    def sleep(seconds: float) -> None:
        oauth.deny(shown[-1].rsplit(" ", 1)[1].rstrip("."))

    with pytest.raises(MailboxAuthError, match="access_denied"):
        device_login(cfg, shown.append, base_dir=tmp_path, device_url=oauth.device_url, sleep=sleep)
    assert not token_cache_path(cfg, tmp_path).exists()


# -- Microsoft provider (msal), pointed at the local server -----------------------------------

def test_msal_client_credentials_token_works_and_force_refresh_renews(oauth, imap, tmp_path):
    client_id, user = account(oauth)
    cfg = mailbox(oauth, client_id, user, oauth_provider="microsoft", tenant=OAuthServer.TENANT, oauth_token_url="")
    provider = TokenProvider.for_mailbox(cfg, base_dir=tmp_path, authority=oauth.authority)
    imap.deliver(user, b"Subject: via msal\r\n\r\nx\r\n")
    before = len(oauth.grants)
    token = provider.token()
    oauth.expire_tokens()
    renewed = provider.token(force_refresh=True)
    assert renewed != token and grants_since(oauth, before) == ["client_credentials", "client_credentials"]
    with imap_login(imap, user, renewed) as client:
        assert subjects(client) == [b"Subject: via msal"]


def test_msal_wrong_secret_is_a_readable_auth_error(oauth, tmp_path):
    client_id, user = account(oauth)
    cfg = mailbox(oauth, client_id, user, oauth_provider="microsoft", tenant=OAuthServer.TENANT,
                  client_secret="wrong", oauth_token_url="")
    with pytest.raises(MailboxAuthError, match="invalid_client: AADSTS7000215"):
        TokenProvider.for_mailbox(cfg, base_dir=tmp_path, authority=oauth.authority).token()


def test_msal_delegated_device_login_and_refresh_rewrite_the_cache(oauth, imap, tmp_path):
    client_id, user = account(oauth, public=True)
    cfg = mailbox(oauth, client_id, user, oauth_provider="microsoft", tenant=OAuthServer.TENANT,
                  oauth_flow="delegated", client_secret="", oauth_token_url="",
                  oauth_scope="https://outlook.office365.com/IMAP.AccessAsUser.All offline_access")

    def echo(message: str) -> None:  # the person signs in as soon as the code is shown
        oauth.approve(message.rsplit(" ", 1)[1].rstrip("."), user)

    assert device_login(cfg, echo, base_dir=tmp_path, authority=oauth.authority) == user
    cache_file = token_cache_path(cfg, tmp_path)
    assert stat.S_IMODE(cache_file.stat().st_mode) == 0o600
    first = oauth.refresh_tokens_of(user)
    assert len(first) == 1 and first[0] in cache_file.read_text()

    restarted = type(TokenProvider.for_mailbox(cfg, base_dir=tmp_path, authority=oauth.authority))(
        cfg, tmp_path, authority=oauth.authority)  # a new process: only the file
    token = restarted.token(force_refresh=True)
    second = oauth.refresh_tokens_of(user)
    assert second != first and second[0] in cache_file.read_text() and first[0] not in cache_file.read_text()
    imap.deliver(user, b"Subject: msal delegated\r\n\r\nx\r\n")
    with imap_login(imap, user, token) as client:
        assert subjects(client) == [b"Subject: msal delegated"]


# -- warnings ----------------------------------------------------------------------------------

@pytest.mark.parametrize("expires, expected", [
    ("2027-03-31", []),
    ("2027-03-01", ["expires on 2027-03-01 (in 30 days)"]),
    ("2027-02-02", ["expires on 2027-02-02 (in 3 days)"]),
    ("2027-01-29", ["expired on 2027-01-29"]),
])
def test_client_secret_expiry_warnings(oauth, tmp_path, expires, expected):
    cfg = mailbox(oauth, "warn", "warn@example.org", client_secret_expires=expires)
    warnings = credential_warnings(cfg, dt.datetime(2027, 1, 30, 12, tzinfo=dt.timezone.utc), base_dir=tmp_path)
    assert len(warnings) == len(expected)
    for warning, text in zip(warnings, expected):
        assert text in warning and "mailbox warn" in warning


def test_password_mailboxes_have_no_credential_warnings(oauth, tmp_path):
    cfg = mailbox(oauth, "pw", "pw@example.org", auth="password", client_secret_expires="2000-01-01")
    assert credential_warnings(cfg, dt.datetime.now(dt.timezone.utc), base_dir=tmp_path) == []


# -- the CLI -----------------------------------------------------------------------------------

def _cli_config(tmp_path: Path, oauth: OAuthServer, extra: dict) -> Path:
    return write_config(tmp_path, mailboxes=[MailboxSpec("swig", "swig-cli@example.org", "", extra={
        "auth": "oauth2", "oauth_provider": "generic", "oauth_token_url": oauth.token_url,
        "oauth_ca_file": oauth.ca_file, **extra})])


def test_cli_auth_login_and_status(oauth, tmp_path):
    from intake.cli import main

    oauth.add_client("cli-app", None, mailbox="swig-cli@example.org")
    path = _cli_config(tmp_path, oauth, {"client_id": "cli-app", "oauth_flow": "delegated",
                                         "client_secret_expires": "2000-01-01"})
    runner = CliRunner()

    status = runner.invoke(main, ["--config", str(path), "auth", "status"])
    assert status.exit_code == 1
    assert "not signed in" in status.output and "expired on 2000-01-01" in status.output

    approver = _auto_approve(oauth, "swig-cli@example.org")
    result = runner.invoke(main, ["--config", str(path), "auth", "login", "swig", "--device-url", oauth.device_url])
    approver.join(10)
    assert result.exit_code == 0, result.output
    assert "enter the code" in result.output and "Signed in as swig-cli@example.org" in result.output
    settings = load_settings(path)
    assert token_cache_path(settings.mailboxes[0], settings.base_dir).exists()

    status = runner.invoke(main, ["--config", str(path), "auth", "status", "--refresh", "--format", "json"])
    rows = json.loads(status.output)
    assert rows[0]["token"] == "ok" and rows[0]["flow"] == "delegated"
    assert [w for w in rows[0]["warnings"] if "not signed in" in w] == []


def _auto_approve(oauth: OAuthServer, user: str):
    """Approve the next device code the server hands out (the person at the browser)."""
    import threading

    with oauth.state.lock:
        earlier = set(oauth.state.devices)  # other tests' codes, left pending or declined

    def run() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with oauth.state.lock:
                pending = [d.user_code for code, d in oauth.state.devices.items() if code not in earlier]
            if pending:
                oauth.approve(pending[0], user)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
