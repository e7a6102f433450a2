"""`intake user ...` and `intake web`, run as real processes against a real database."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.config import write_config
from tests.web.client import WebClient

INTAKE = str(Path(sys.executable).parent / "intake")


@pytest.fixture
def config(tmp_path) -> Path:
    return write_config(tmp_path, mailboxes=[])


def _intake(config: Path, *args: str, stdin: str = ""):  # type: ignore[no-untyped-def]
    """Run a command in-process (the CLI's own code path; a subprocess per call is slow)."""
    from click.testing import CliRunner

    from intake.cli import main

    result = CliRunner().invoke(main, ["--config", str(config), *args], input=stdin)
    result.returncode = result.exit_code
    return result


def test_user_add_list_disable_and_set_password(config):
    added = _intake(config, "user", "add", "Ann@Example.org", "--role", "coordinator", "--group", "SWIG",
                    "--group", "sdig", "--password-stdin", stdin="a-long-enough-secret\n")
    assert added.returncode == 0, added.stderr
    assert "added ann@example.org (coordinator: SDIG, SWIG)" in added.stdout
    admin = _intake(config, "user", "add", "boss@example.org", "--role", "admin", stdin="another-long-secret\n")
    assert admin.returncode == 0, admin.stderr  # stdin is not a terminal: read without a prompt
    listed = json.loads(_intake(config, "user", "list", "--format", "json").stdout)
    assert [(u["email"], u["role"], u["groups"], u["active"]) for u in listed] == [
        ("ann@example.org", "coordinator", ["SDIG", "SWIG"], True), ("boss@example.org", "admin", [], True)]

    assert _intake(config, "user", "add", "ann@example.org", "--role", "admin", stdin="a-long-enough-secret\n").returncode == 1
    bad_group = _intake(config, "user", "add", "c@example.org", "--role", "coordinator", "--group", "NOPE", "--password-stdin",
                        stdin="a-long-enough-secret\n")
    assert bad_group.returncode == 1 and "unknown group" in bad_group.stderr
    short = _intake(config, "user", "add", "d@example.org", "--role", "admin", "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "at least" in short.stderr

    assert _intake(config, "user", "set-password", "ann@example.org", "--password-stdin",
                   stdin="a-brand-new-secret\n").returncode == 0
    assert _intake(config, "user", "disable", "ann@example.org").returncode == 0
    listed = json.loads(_intake(config, "user", "list", "--format", "json").stdout)
    assert listed[0]["active"] is False

    from intake.config import load_settings
    from intake.db import make_engine, make_sessionmaker
    from intake.models import AuditEvent, User
    from intake.users import _verify

    settings = load_settings(config, env={})
    with make_sessionmaker(make_engine(settings["database.url"]))() as session:
        ann = session.query(User).filter_by(email="ann@example.org").one()
        assert ann.password_hash.startswith("$argon2id$")
        assert _verify(ann.password_hash, "a-brand-new-secret") and not _verify(ann.password_hash, "a-long-enough-secret")
        actions = [e.action for e in session.query(AuditEvent).order_by(AuditEvent.id)]
        assert actions == ["user.add", "user.add", "user.set_password", "user.disable"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_intake_web_serves_the_login_page_and_signs_in(config):
    assert _intake(config, "user", "add", "w@example.org", "--role", "admin", "--password-stdin",
                   stdin="web-test-password\n").returncode == 0
    port = _free_port()
    proc = subprocess.Popen([INTAKE, "--config", str(config), "web", "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "intake web did not start"
                time.sleep(0.1)
        client = WebClient(f"http://127.0.0.1:{port}")
        reply = client.login("w@example.org", "web-test-password")
        assert reply.status == 302 and reply.location == "/"
        assert client.get("/queues/SWIG").status == 200
        assert client.get("/export/SWIG.csv").body.startswith(b"\xef\xbb\xbfreference,")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_demo_accounts_are_created_once_and_can_sign_in(config):
    from intake.cli.context import AppContext
    from intake.users import authenticate
    from intake.web.demo_accounts import DEMO_PASSWORD, ensure_demo_accounts

    app = AppContext(str(config))
    first = ensure_demo_accounts(app.sessions, app.settings)
    assert ensure_demo_accounts(app.sessions, app.settings) == first
    assert first[0] == f"admin@example.org / {DEMO_PASSWORD} (admin, all groups)"
    assert f"swig.coordinator@example.org / {DEMO_PASSWORD} (coordinator: SWIG)" in first
    import datetime as dt

    with app.sessions() as session:
        account = authenticate(session, "swig.coordinator@example.org", DEMO_PASSWORD, dt.datetime.now(dt.timezone.utc))
        assert account is not None and account.groups == ("SWIG",)
