"""Fixtures for the web app: a migrated database with rows made through the ORM, the app
served by waitress on a free loopback port in a thread, HTTP clients and one Chromium.

The server and database live for the whole session; each test makes its own rows (unique
names and emails) and asserts on those, so tests do not depend on each other's data.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.support.config import write_config
from tests.web.client import WebClient

PASSWORD = "correct-horse-battery"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
_seq = itertools.count(1)


@dataclass
class WebApp:
    url: str
    settings: Any
    sessions: sessionmaker[Session]

    def client(self) -> WebClient:
        return WebClient(self.url)


@pytest.fixture(scope="session")
def web(tmp_path_factory) -> WebApp:
    from intake.config import load_settings
    from intake.db import make_engine, make_sessionmaker, upgrade
    from intake.users import add_user
    from intake.web import create_app
    from intake.web.serve import start_in_thread

    directory = tmp_path_factory.mktemp("web")
    path = write_config(directory, mailboxes=[], sections={"web": {"secret_key": "test-secret-key-not-for-production"}})
    settings = load_settings(path, env={})
    upgrade(settings["database.url"])
    sessions = make_sessionmaker(make_engine(settings["database.url"]))
    codes = [g.code for g in settings.groups]
    with sessions.begin() as session:
        add_user(session, "admin@example.org", PASSWORD, role="admin", known_groups=codes)
        add_user(session, "swig@example.org", PASSWORD, role="coordinator", groups=["SWIG"], known_groups=codes)
        add_user(session, "sdig@example.org", PASSWORD, role="coordinator", groups=["SDIG"], known_groups=codes)
    handle = start_in_thread(settings, "127.0.0.1", 0, app=create_app(settings, sessions=sessions))
    yield WebApp(f"http://127.0.0.1:{handle.port}", settings, sessions)
    handle.close()


@pytest.fixture
def make_application(web) -> Callable[..., int]:
    """Factory: an application (with one interest message) made through the ORM; returns its id."""
    from intake.models import Application, Message
    from intake.store import reference_for

    def make(group: str = "SWIG", *, name: str | None = None, status: str = "new", body_text: str = "I would like to join.",
             body_html: str = "", attachments: list[tuple[str, str, bytes]] = (), email: str | None = None,
             received_at: dt.datetime | None = None, organisation: str = "NHS Test Trust") -> int:
        from intake.models import AttachmentRow

        n = next(_seq)
        name = name or f"Applicant {n}-{os.getpid()}"
        email = email or f"applicant{n}-{os.getpid()}@nhs.example"
        when = received_at or dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=n)
        with web.sessions.begin() as session:
            message = Message(message_id=f"<m{n}-{os.getpid()}@nhs.example>", message_id_key=f"m{n}-{os.getpid()}",
                              content_hash=f"hash-{n}-{os.getpid()}", mailbox=group.lower(), kind="interest",
                              from_address=email, from_name=name, subject=f"Joining {group}", received_at=when,
                              body_text=body_text, body_html=body_html,
                              attachments=[AttachmentRow(filename=f, content_type=t, size=len(d), data=d) for f, t, d in attachments])
            app = Application(group_code=group, status=status, name=name, email=email, job_title="Director of Nursing",
                              organisation=organisation, received_at=when, messages=[message])
            session.add(app)
            session.flush()
            app.reference = reference_for(app.id)
            return app.id

    return make


@pytest.fixture
def audit_events(web) -> Callable[..., list]:
    """Query: audit events matching column values, oldest first."""
    from intake.models import AuditEvent

    def query(**where: Any) -> list:
        with web.sessions() as session:
            stmt = select(AuditEvent).filter_by(**where).order_by(AuditEvent.id)
            return list(session.scalars(stmt))

    return query


@pytest.fixture
def row(web) -> Callable[[int], Any]:
    """Read an application row fresh from the database."""
    from intake.models import Application

    def get(application_id: int) -> Application:
        with web.sessions() as session:
            return session.get(Application, application_id)

    return get


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, web):
    """A fresh browser context (own cookies) and page; fails the test on any JS error."""
    context = browser.new_context(base_url=web.url, accept_downloads=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def sign_in(pg, email: str, password: str = PASSWORD) -> None:
    pg.goto("/login")
    pg.get_by_label("Email address").fill(email)
    pg.get_by_label("Password").fill(password)
    pg.get_by_role("button", name="Sign in").click()
    pg.wait_for_url("**/")
