"""Credential warnings where an administrator sees them: `intake check` (against a real token
server and a Dovecot that only takes tokens) and the dashboard (admins only, real HTTP)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from click.testing import CliRunner

from intake.cli import main
from intake.config import load_settings
from intake.db import make_engine, make_sessionmaker, upgrade
from intake.errors import MailboxAuthError
from intake.oauth import TokenProvider, status_path
from tests.servers.oauth_server import OAuthServer
from tests.support.config import MailboxSpec, write_config
from tests.test_oauth import SECRET, account, imap, oauth, sink  # noqa: F401  (fixtures)
from tests.web.client import WebClient

PASSWORD = "correct-horse-battery"


def _in_days(days: int) -> str:
    return (dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=days)).isoformat()


def _oauth_box(name: str, oauth: OAuthServer, client_id: str, user: str, port: int, **extra) -> MailboxSpec:  # noqa: F811
    return MailboxSpec(name, user, "", port=port, extra={
        "auth": "oauth2", "oauth_provider": "generic", "client_id": client_id, "client_secret": SECRET,
        "oauth_token_url": oauth.token_url, "oauth_ca_file": oauth.ca_file, **extra})


def _check(path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, ["--config", str(path), "check"])
    return result.exit_code, result.output.splitlines()


def test_check_signs_in_with_tokens_and_warns_of_an_expiring_secret(oauth, imap, tmp_path):  # noqa: F811
    client_id, user = account(oauth)
    expires = _in_days(10)
    path = write_config(tmp_path / "cfg", smtp_port=imap.submission_port,
                        mailboxes=[_oauth_box("swig", oauth, client_id, user, imap.port, client_secret_expires=expires)],
                        sections={"smtp": {"auth": "oauth2", "oauth_mailbox": "swig", "from_address": user}})
    code, lines = _check(path)
    assert code == 0, lines  # a warning is not a failure: everything works today
    assert any(re.match(r"mailbox\s+OK\s+swig: connected", line) for line in lines), lines
    assert any(re.match(r"smtp\s+OK\s+", line) for line in lines), lines
    warnings = [line for line in lines if line.startswith("oauth")]
    assert len(warnings) == 1 and re.match(r"oauth\s+WARN\s+mailbox swig: the OAuth client secret expires on", warnings[0])
    assert f"{expires} (in 10 days)" in warnings[0]


def test_check_reports_a_refused_secret_and_the_recorded_refresh_failure(oauth, imap, tmp_path):  # noqa: F811
    good_id, good_user = account(oauth)
    bad_id, bad_user = account(oauth)
    path = write_config(tmp_path / "cfg", smtp_port=imap.submission_port, mailboxes=[
        _oauth_box("good", oauth, good_id, good_user, imap.port, client_secret_expires=_in_days(200)),
        _oauth_box("bad", oauth, bad_id, bad_user, imap.port, client_secret="expired-secret")],
        sections={"smtp": {"auth": "oauth2", "oauth_mailbox": "good", "from_address": good_user}})
    code, lines = _check(path)
    assert code == 1
    assert any(re.match(r"mailbox\s+FAIL\s+bad: .*invalid_client", line) for line in lines), lines
    warnings = [line for line in lines if line.startswith("oauth")]
    assert len(warnings) == 1, lines
    assert re.match(r"oauth\s+WARN\s+mailbox bad: the last token refresh failed at .*invalid_client", warnings[0])
    # Recorded beside intake.toml (relative paths resolve there), where the dashboard looks too.
    settings = load_settings(path, env={})
    assert status_path(settings.mailboxes[1], settings.base_dir).is_file()


def test_dashboard_shows_credential_warnings_to_admins_only(oauth, tmp_path):  # noqa: F811
    from intake.users import add_user
    from intake.web import create_app
    from intake.web.serve import start_in_thread

    client_id, user = account(oauth)
    path = write_config(tmp_path / "cfg", mailboxes=[
        _oauth_box("swig", oauth, client_id, user, 1, client_secret_expires=_in_days(3), client_secret="wrong")],
        sections={"web": {"secret_key": "test-secret"}})
    settings = load_settings(path, env={})
    upgrade(settings["database.url"])
    sessions = make_sessionmaker(make_engine(settings["database.url"]))
    codes = [g.code for g in settings.groups]
    with sessions.begin() as s:
        add_user(s, "admin@example.org", PASSWORD, role="admin", known_groups=codes)
        add_user(s, "coordinator@example.org", PASSWORD, role="coordinator", groups=["SWIG"], known_groups=codes)
    with pytest.raises(MailboxAuthError, match="invalid_client"):  # a real refusal, recorded as the worker's is
        TokenProvider.for_mailbox(settings.mailboxes[0], base_dir=settings.base_dir).token()
    handle = start_in_thread(settings, "127.0.0.1", 0, app=create_app(settings, sessions=sessions))
    try:
        admin, coordinator = WebClient(f"http://127.0.0.1:{handle.port}"), WebClient(f"http://127.0.0.1:{handle.port}")
        assert admin.login("admin@example.org", PASSWORD).status == 302
        assert coordinator.login("coordinator@example.org", PASSWORD).status == 302
        seen, unseen = admin.get("/"), coordinator.get("/")
    finally:
        handle.close()
    assert seen.status == 200 and unseen.status == 200
    assert "Mail sign-in needs attention" in seen.text
    assert "mailbox swig: the OAuth client secret expires on" in seen.text and "(in 3 days)" in seen.text
    assert "the last token refresh failed at" in seen.text and "invalid_client" in seen.text
    assert "Mail sign-in needs attention" not in unseen.text and "invalid_client" not in unseen.text
