"""The web app's pure parts: workflow table, CSV cells, login limiter, chart, HTML cleaning."""

from __future__ import annotations

import datetime as dt

import pytest

from intake.domain import Status
from intake.web.csvexport import BOM, DEFAULT_COLUMNS, cell, choose_columns, lines
from intake.web.emailview import sanitise
from intake.web.ratelimit import LoginLimiter
from intake.web.workflow import TRANSITIONS, allowed


def test_workflow_table_covers_every_status_and_follows_the_issue():
    assert set(TRANSITIONS) == set(Status)
    assert allowed("new", "contacted") and allowed("contacted", "accepted") and allowed("contacted", "declined")
    assert not allowed("new", "accepted") and not allowed("new", "new") and not allowed("bogus", "new")
    for status in ("new", "contacted"):
        assert allowed(status, "withdrawn") and allowed(status, "undeliverable")


@pytest.mark.parametrize("value, expected", [("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
                                             ("+44 20", "'+44 20"), ("-1", "'-1"), ("@SUM(A1)", "'@SUM(A1)"),
                                             ("Zoë Ağaoğlu", "Zoë Ağaoğlu"), (None, ""), (3, "3")])
def test_csv_cells_never_become_formulas(value, expected):
    assert cell(value) == expected


def test_csv_has_bom_and_minimal_default_columns():
    assert choose_columns([]) == DEFAULT_COLUMNS
    assert "notes" not in DEFAULT_COLUMNS and "first_message" not in DEFAULT_COLUMNS
    assert choose_columns(["notes", "name", "bogus"]) == ("name", "notes")
    text = "".join(lines(("name", "received_at"), [{"name": "Zoë", "received_at": dt.datetime(2030, 1, 2, 3, 4, 5, 6)}]))
    assert text == BOM + "name,received_at\r\nZoë,2030-01-02 03:04:05\r\n"


def test_limiter_blocks_per_account_and_per_ip_and_forgets_after_the_window():
    limiter = LoginLimiter(per_account=3, per_ip=5, window=dt.timedelta(minutes=15))
    t0 = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    for _ in range(3):
        limiter.failed("a@x", "1.1.1.1", t0)
    assert limiter.blocked("A@X ", "9.9.9.9", t0)
    assert not limiter.blocked("b@x", "1.1.1.1", t0)
    limiter.failed("b@x", "1.1.1.1", t0)
    limiter.failed("c@x", "1.1.1.1", t0)
    assert limiter.blocked("d@x", "1.1.1.1", t0)  # five from one address
    assert not limiter.blocked("a@x", "9.9.9.9", t0 + dt.timedelta(minutes=16))
    limiter.failed("e@x", "2.2.2.2", t0)
    limiter.succeeded("e@x")
    assert not limiter.blocked("e@x", "3.3.3.3", t0)


def test_sanitise_keeps_prose_and_drops_active_content():
    out = str(sanitise('<p style="color:red">Hi <a href="javascript:x()">j</a> <a href="https://nhs.uk">ok</a></p>'
                       '<img src="https://t.example/p.gif"><script>x</script><style>p{}</style>'))
    assert out == '<p>Hi <a rel="noopener noreferrer nofollow">j</a> <a href="https://nhs.uk" rel="noopener noreferrer nofollow">ok</a></p>'
