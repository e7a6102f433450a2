"""intake.smtp.SmtpSender and the delivery job with `smtp.auth = "oauth2"`: a real token
server, Dovecot submission (which checks tokens by introspection), a strict XOAUTH2 server
that records how the client answers an error challenge, and outbox rows in a real database."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import uuid
import datetime as dt
import json
import threading
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from sqlalchemy import select

from intake.clock import FixedClock
from intake.config import load_settings
from intake.db import make_engine, make_sessionmaker, upgrade
from intake.delivery import deliver_due
from intake.errors import TemporaryDeliveryError
from intake.models import Outbox
from intake.oauth import device_login
from intake.smtp import SmtpSender
from tests.servers.dovecot import free_port
from tests.servers.oauth_server import OAuthServer
from tests.support.config import MailboxSpec, write_config
from tests.test_oauth import SECRET, _approve_on_second_poll, account, imap, oauth, sink  # noqa: F401  (fixtures)

NOW = dt.datetime(2027, 1, 5, 9, 0, tzinfo=dt.timezone.utc)


def _settings(directory: Path, oauth: OAuthServer, user: str, smtp_port: int, **extra):  # noqa: F811
    mailbox = {"auth": "oauth2", "oauth_provider": "generic", "oauth_token_url": oauth.token_url,
               "oauth_ca_file": oauth.ca_file, **extra}
    path = write_config(directory, smtp_port=smtp_port, mailboxes=[MailboxSpec("swig", user, "", port=1, extra=mailbox)],
                        sections={"smtp": {"auth": "oauth2", "oauth_mailbox": "swig", "from_address": user}})
    return load_settings(path, env={})


def _message(subject: str) -> bytes:
    return f"Subject: {subject}\r\n\r\nThank you for your interest.\r\n".encode()


# -- Dovecot submission ------------------------------------------------------------------------

def test_relative_token_cache_is_found_beside_intake_toml_not_in_the_working_directory(oauth, imap, sink, tmp_path,  # noqa: F811
                                                                                       monkeypatch):
    client_id, user = account(oauth, public=True)
    settings = _settings(tmp_path / "cfg", oauth, user, imap.submission_port, client_id=client_id,
                         oauth_flow="delegated", token_cache="tokens/swig.json")
    cache = settings.base_dir / "tokens" / "swig.json"
    # The sign-in writes the cache where the config says (`intake auth login` does the same).
    shown: list[str] = []
    sleep, _ = _approve_on_second_poll(oauth, user, shown)
    device_login(dataclasses.replace(settings.mailboxes[0], token_cache=str(cache)), shown.append,
                 base_dir=settings.base_dir, device_url=oauth.device_url, sleep=sleep)
    signed_in = json.loads(cache.read_text())["refresh_token"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # e.g. a systemd unit started in /

    subject = f"Relative cache {client_id}"
    with SmtpSender(settings) as sender:
        sender.send(user, "applicant@example.net", _message(subject))
    assert [m.rcpt_tos for m in sink.messages if subject.encode() in m.data] == [["applicant@example.net"]]
    assert json.loads(cache.read_text())["refresh_token"] != signed_in  # refreshed, rotated, saved in place
    assert list(elsewhere.iterdir()) == []


def test_a_token_revoked_early_is_replaced_once_and_the_message_goes(oauth, imap, sink, tmp_path):  # noqa: F811
    client_id, user = account(oauth)
    settings = _settings(tmp_path, oauth, user, imap.submission_port, client_id=client_id, client_secret=SECRET)
    with SmtpSender(settings) as sender:
        sender.send(user, "first@example.net", _message(f"First {client_id}"))
    before = len(oauth.grants)
    oauth.expire_tokens()  # intake's cached token still looks valid to intake

    subject = f"After revocation {client_id}"
    with SmtpSender(settings) as sender:
        sender.send(user, "second@example.net", _message(subject))
    assert [m.rcpt_tos for m in sink.messages if subject.encode() in m.data] == [["second@example.net"]]
    assert oauth.grants[before:] == ["client_credentials"]  # exactly one fresh token


# -- a strict XOAUTH2 server --------------------------------------------------------------------

class StrictXOAuth2:
    """An aiosmtpd handler offering only XOAUTH2, checking tokens with the test token
    server. After a bad token it sends the error challenge and, as RFC 7628 3.2.2 asks,
    requires an empty answer before it ends the exchange with 535; any other answer is
    refused with 501. `answers` records what each client sent back to the challenge."""

    def __init__(self, oauth: OAuthServer) -> None:  # noqa: F811
        self.oauth = oauth
        self.answers: list[bytes] = []
        self.delivered: list[tuple[str, list[str]]] = []
        self.lock = threading.Lock()

    async def auth_XOAUTH2(self, server, args):  # type: ignore[no-untyped-def]  # noqa: N802
        fields = dict(part.split("=", 1) for part in base64.b64decode(args[1]).decode().split("\x01") if part)
        token = fields.get("auth", "").removeprefix("Bearer ")
        answer = await asyncio.get_running_loop().run_in_executor(None, self.oauth.introspect, {"token": token})
        if answer.get("active") and answer.get("username") == fields.get("user"):
            return AuthResult(success=True, auth_data=fields["user"])
        error = json.dumps({"status": "401", "schemes": "bearer", "scope": "https://outlook.office.com/SMTP.Send"})
        reply = await server.challenge_auth(error)
        with self.lock:
            self.answers.append(reply)
        if reply != b"":
            return AuthResult(success=False, handled=False, message="501 5.5.2 answer the error challenge with an empty response")
        return AuthResult(success=False, handled=False, message="535 5.7.3 Authentication unsuccessful")

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]  # noqa: N802
        with self.lock:
            self.delivered.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 2.0.0 OK"


@pytest.fixture
def strict(oauth):  # noqa: F811
    handler = StrictXOAuth2(oauth)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), auth_require_tls=False)
    controller.start()
    yield handler, controller.port
    controller.stop()


def test_the_error_challenge_is_answered_empty_then_a_fresh_token_signs_in(oauth, strict, tmp_path):  # noqa: F811
    handler, port = strict
    client_id, user = account(oauth)
    settings = _settings(tmp_path, oauth, user, port, client_id=client_id, client_secret=SECRET)
    with SmtpSender(settings) as sender:
        sender.send(user, "one@example.net", _message("one"))
    oauth.expire_tokens()

    with SmtpSender(settings) as sender:
        sender.send(user, "two@example.net", _message("two"))
    assert handler.answers == [b""]
    assert handler.delivered == [(user, ["one@example.net"]), (user, ["two@example.net"])]


def test_a_token_refused_twice_is_a_temporary_failure(oauth, strict, tmp_path):  # noqa: F811
    handler, port = strict
    client_id, user = account(oauth)
    # The token server issues tokens for another mailbox than the one we sign in as.
    settings = _settings(tmp_path, oauth, "someone-else@example.org", port, client_id=client_id, client_secret=SECRET)
    with pytest.raises(TemporaryDeliveryError, match="refused our login: 535"):
        with SmtpSender(settings) as sender:
            sender.send(user, "x@example.net", _message("x"))
    assert handler.answers == [b"", b""] and handler.delivered == []


# -- the delivery job: no token means "retry later", never a crash -------------------------------

def _outbox_row(sessions, to: str = "applicant@example.net") -> int:
    with sessions.begin() as s:
        row = Outbox(kind="ack", to_address=to, from_address="blfi@example.org", subject="Your interest",
                     message_id=f"ack-{uuid.uuid4().hex}@example.org", body=_message("Your interest"),
                     status="pending", attempts=0, next_attempt_at=NOW, created_at=NOW)
        s.add(row)
        s.flush()
        return row.id


@pytest.mark.parametrize("fault, expected", [
    ("unreachable", "cannot reach token endpoint"),
    ("wrong_secret", "HTTP 401 invalid_client"),
    ("no_such_mailbox", "key smtp.oauth_mailbox"),
])
def test_delivery_without_a_token_keeps_the_row_for_a_retry(oauth, sink, tmp_path, fault, expected):  # noqa: F811
    client_id, user = account(oauth)
    extra = {"client_id": client_id, "client_secret": "wrong" if fault == "wrong_secret" else SECRET}
    if fault == "unreachable":
        extra["oauth_token_url"] = f"https://127.0.0.1:{free_port()}/token"
    settings = _settings(tmp_path, oauth, user, sink.port, **extra)
    if fault == "no_such_mailbox":
        settings = dataclasses.replace(settings, values={**settings.values, "smtp.oauth_mailbox": "nowhere"})
    upgrade(settings["database.url"])
    sessions = make_sessionmaker(make_engine(settings["database.url"]))
    first, second = _outbox_row(sessions), _outbox_row(sessions)

    report = deliver_due(sessions, settings, FixedClock(NOW))
    assert (report.sent, report.retried, report.failed, report.error) == (0, 1, 0, "")
    with sessions() as s:
        rows = {r.id: r for r in s.scalars(select(Outbox))}
    assert rows[first].status == "pending" and rows[first].attempts == 1
    assert expected in rows[first].last_error and "no OAuth 2.0 token" in rows[first].last_error
    assert rows[first].next_attempt_at is not None and rows[first].claimed_by is None
    assert rows[second].status == "pending" and rows[second].attempts == 0  # waits for the next run
