"""Shared fixtures: real servers on loopback, started once per test session."""

from __future__ import annotations

import itertools
import os

import pytest

from tests.servers.dovecot import Dovecot, DovecotUnavailable

_users = itertools.count(1)


@pytest.fixture(scope="session")
def dovecot():
    """A private Dovecot for the whole session (IMAP with STARTTLS on .port, implicit TLS on
    .tls_port, CA in .ca_file). Tests must not share users: use `mail_account`."""
    try:
        server = Dovecot().start()
    except DovecotUnavailable as exc:
        pytest.fail(str(exc))  # never a skip: a missing server is a failing suite
    yield server
    server.cleanup()


@pytest.fixture
def mail_account(dovecot):
    """Factory: a fresh Dovecot user (email, password) that no other test uses.

    `mail_account()` -> ("u7-123@example.org", "pw"); `mail_account("swig", "secret")`."""

    def make(prefix: str = "u", password: str = "pw") -> tuple[str, str]:
        email = f"{prefix}{next(_users)}-{os.getpid()}@example.org"
        dovecot.add_user(email, password)
        return email, password

    return make


@pytest.fixture
def tcp_proxy():
    """Factory: a TcpProxy in front of a loopback port, for cut/stall faults; stopped after."""
    from tests.servers.tcp_proxy import TcpProxy

    proxies: list[TcpProxy] = []

    def make(target_port: int) -> TcpProxy:
        proxies.append(TcpProxy(target_port).start())
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.stop()


@pytest.fixture(scope="session")
def postgres():
    """A private PostgreSQL server, or the one named by INTAKE_TEST_DATABASE_URL."""
    from tests.servers.postgres import Postgres, PostgresUnavailable

    if os.environ.get("INTAKE_TEST_DATABASE_URL"):
        yield None
        return
    try:
        server = Postgres().start()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc))
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    if postgres is None:
        return os.environ["INTAKE_TEST_DATABASE_URL"]
    return postgres.create_database()


@pytest.fixture
def smtp_server():
    """A real SMTP server on a free loopback port, recording every message it accepts."""
    from tests.servers.smtp import SmtpServer

    server = SmtpServer().start()
    yield server
    server.stop()
