"""GET /healthz and GET /metrics over real HTTP: open to a monitor without signing in, the
right status codes, Prometheus text that parses, and no personal data in either."""

from __future__ import annotations

import datetime as dt
import json
import re
from contextlib import contextmanager

import pytest

from intake.clock import FixedClock
from intake.config import load_settings
from intake.db import make_engine, make_sessionmaker, upgrade
from intake.models import MailboxState
from tests.support.config import MailboxSpec, write_config
from tests.web.client import WebClient

NOW = dt.datetime(2027, 1, 5, 12, 0, tzinfo=dt.timezone.utc)
FAMILIES = ("intake_messages_total", "intake_outbox_messages", "intake_poll_errors_total",
            "intake_poll_duration_seconds", "intake_polls_total")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{((?:{_LABEL})(?:,{_LABEL})*)?\}})? (\S+)$")


def parse_prometheus(text: str) -> dict[str, dict]:
    """A strict reader of the text exposition format (0.0.4): every sample belongs to a
    family declared by HELP and TYPE first; values are numbers. Fails on anything else."""
    assert text.endswith("\n")
    families: dict[str, dict] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_ = line[7:].partition(" ")
            assert re.fullmatch(_NAME, name) and help_, line
            families.setdefault(name, {"samples": []})["help"] = help_
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            assert "type" not in families.get(name, {}), f"TYPE twice: {line}"
            families.setdefault(name, {"samples": []})["type"] = kind
        else:
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, labels, value = match.groups()
            assert name in families and "type" in families[name], f"sample before its TYPE: {line}"
            float(value)  # raises for anything but a number
            pairs = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels or ""))
            families[name]["samples"].append((pairs, float(value)))
    return families


def _sample(families: dict, name: str, **labels: str) -> float:
    return sum(v for got, v in families[name]["samples"] if all(got.get(k) == x for k, x in labels.items()))


# -- against the shared web app (other tests' applicants are in its database) -----------------

def test_anonymous_monitor_reads_health_without_a_session(web):
    reply = web.client().get("/healthz")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("application/json")
    assert json.loads(reply.body) == {"status": "ok", "database": "ok", "mailboxes": {}}
    assert "set-cookie" not in reply.headers  # a scrape neither needs nor gets a session
    assert reply.headers["cache-control"] == "no-store"


def test_anonymous_monitor_reads_metrics_with_no_personal_data(web, make_application):
    make_application("SWIG", email="metrics-applicant@nhs.example", name="Metrics Applicant")
    reply = web.client().get("/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = parse_prometheus(reply.text)
    for name in FAMILIES:
        assert name in families, name
    assert families["intake_messages_total"]["type"] == "counter"
    assert _sample(families, "intake_messages_total", kind="interest") >= 1
    assert not EMAIL.search(reply.text) and "Metrics Applicant" not in reply.text


def test_only_the_two_read_outs_are_open(web):
    anon = web.client()
    assert anon.post("/healthz", {}).status in (400, 403, 405)  # no CSRF token, no account
    for path in ("/healthz/", "/metrics.txt", "/healthzz", "/"):
        reply = anon.get(path)
        assert reply.status == 302 and reply.location.startswith("/login"), path


# -- apps of their own: mailboxes, a fixed clock, a database that is gone ----------------------

@contextmanager
def _serve(settings, sessions, clock=None):
    from intake.web import create_app
    from intake.web.serve import start_in_thread

    handle = start_in_thread(settings, "127.0.0.1", 0, app=create_app(settings, sessions=sessions, clock=clock))
    try:
        yield WebClient(f"http://127.0.0.1:{handle.port}")
    finally:
        handle.close()


def _settings(tmp_path, **kw):
    path = write_config(tmp_path, mailboxes=[MailboxSpec("swig", "swig@example.org", "pw", port=1, group="SWIG"),
                                             MailboxSpec("sdig", "sdig@example.org", "pw", port=1, group="SDIG")],
                        sections={"web": {"secret_key": "test-secret"}}, **kw)
    return load_settings(path, env={})


def test_a_mailbox_not_polled_recently_makes_health_503_without_its_error_text(tmp_path):
    settings = _settings(tmp_path)
    upgrade(settings["database.url"])
    sessions = make_sessionmaker(make_engine(settings["database.url"]))
    with sessions.begin() as s:
        s.add(MailboxState(name="swig", folder="INBOX", last_success_at=NOW - dt.timedelta(seconds=30),
                           polls_total=4, last_poll_seconds=0.5))
        s.add(MailboxState(name="sdig", folder="INBOX", last_success_at=NOW - dt.timedelta(hours=2),
                           poll_errors_total=3, last_error="127.0.0.1:1 refused the login for sdig@example.org"))
    with _serve(settings, sessions, FixedClock(NOW)) as anon:
        reply = anon.get("/healthz")
        assert reply.status == 503
        body = json.loads(reply.body)
        assert body["status"] == "fail" and body["database"] == "ok"
        assert body["mailboxes"] == {
            "swig": {"ok": True, "last_success_age_seconds": 30.0, "last_poll_failed": False},
            "sdig": {"ok": False, "last_success_age_seconds": 7200.0, "last_poll_failed": True}}
        assert "@" not in reply.text and "refused" not in reply.text

        families = parse_prometheus(anon.get("/metrics").text)
        assert _sample(families, "intake_poll_errors_total", mailbox="sdig") == 3
        assert _sample(families, "intake_poll_duration_seconds", mailbox="swig") == 0.5

        with sessions.begin() as s:
            s.get(MailboxState, "sdig").last_success_at = NOW - dt.timedelta(seconds=5)
            s.get(MailboxState, "sdig").last_error = None
        reply = anon.get("/healthz")
        assert reply.status == 200 and json.loads(reply.body)["status"] == "ok"


def test_a_mailbox_never_polled_is_unhealthy(tmp_path):
    settings = _settings(tmp_path)
    upgrade(settings["database.url"])
    with _serve(settings, make_sessionmaker(make_engine(settings["database.url"])), FixedClock(NOW)) as anon:
        reply = anon.get("/healthz")
    assert reply.status == 503
    assert json.loads(reply.body)["mailboxes"]["swig"] == {"ok": False, "last_success_age_seconds": None,
                                                           "last_poll_failed": False}


@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
def test_an_unreachable_database_answers_503(tmp_path, path):
    # A real fault: the database file's folder does not exist, so SQLite cannot open it.
    url = f"sqlite:///{tmp_path / 'gone' / 'intake.db'}"
    settings = _settings(tmp_path, database_url=url)
    with _serve(settings, make_sessionmaker(make_engine(url))) as anon:
        reply = anon.get(path)
    assert reply.status == 503
    if path == "/healthz":
        assert json.loads(reply.body) == {"status": "fail", "database": "unreachable", "mailboxes": {}}
    assert str(tmp_path) not in reply.text  # not even where the database lives
