"""Group dates: British formatting, seeding and re-importing groups.toml, what is upcoming,
and `intake dates list|import` against a real SQLite database."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from intake.ack import import_dates, seed_dates, upcoming_dates
from intake.ack.dates import format_when
from intake.cli import main
from intake.clock import LONDON
from intake.config import load_settings
from intake.db import make_engine, make_sessionmaker, upgrade
from intake.models import GroupDateRow
from tests.support.config import write_config


def london(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=LONDON)


@pytest.mark.parametrize("start, end, text", [
    (london(2027, 1, 12, 10, 0), london(2027, 1, 12, 12, 0), "Tuesday 12 January 2027, 10:00 to 12:00"),
    (london(2027, 6, 1, 9, 30), london(2027, 6, 1, 16, 0), "Tuesday 1 June 2027, 09:30 to 16:00"),   # BST
    (london(2027, 3, 9, 17, 0), london(2027, 3, 10, 13, 0), "Tuesday 9 March 2027, 17:00 to Wednesday 10 March 2027, 13:00"),
])
def test_british_format(start: dt.datetime, end: dt.datetime, text: str) -> None:
    assert format_when(start, end) == text
    # Stored in UTC, shown in London time.
    assert format_when(start.astimezone(dt.timezone.utc), end.astimezone(dt.timezone.utc)) == text


def groups_toml(dates: dict[str, list[tuple[str, str, str]]]) -> str:
    out = []
    for code in ("SWIG", "SDIG"):
        out.append(f'[[groups]]\ncode = "{code}"\ndisplay = "{code}"\nname = "Senior {code} Group"\n'
                   f'addresses = ["{code.lower()}@example.org"]\n')
        for start, end, where in dates.get(code, []):
            out.append(f'[[groups.dates]]\nstart = {start}\nend = {end}\nwhere = "{where}"\n')
    return "\n".join(out)


class Env:
    def __init__(self, tmp_path, dates):  # type: ignore[no-untyped-def]
        self.tmp_path = tmp_path
        self.config = write_config(tmp_path, mailboxes=[], groups_toml=groups_toml(dates))
        self.settings = load_settings(self.config, env={})
        upgrade(self.settings["database.url"])
        self.sessions = make_sessionmaker(make_engine(self.settings["database.url"]))

    def rewrite(self, dates) -> None:  # type: ignore[no-untyped-def]
        (self.tmp_path / "groups.toml").write_text(groups_toml(dates))
        self.settings = load_settings(self.config, env={})

    def rows(self) -> list[tuple[str, str]]:
        with self.sessions() as s:
            return [(r.group_code, r.where) for r in s.execute(select(GroupDateRow).order_by(GroupDateRow.start, GroupDateRow.group_code)).scalars()]

    def cli(self, *args: str) -> str:
        result = CliRunner().invoke(main, ["--config", str(self.config), *args])
        assert result.exit_code == 0, result.output
        return result.output


JAN = ("2027-01-12T10:00:00", "2027-01-12T12:00:00", "Online")
MAR = ("2027-03-09T10:00:00", "2027-03-09T12:30:00", "Skipton House, London")
FEB = ("2027-02-02T14:00:00", "2027-02-02T16:00:00", "Leeds")


def test_seed_only_on_first_start_then_import_upserts_by_stable_uid(tmp_path) -> None:
    env = Env(tmp_path, {"SWIG": [MAR, JAN], "SDIG": [FEB]})
    with env.sessions.begin() as s:
        assert seed_dates(s, env.settings.groups) == 3
    with env.sessions.begin() as s:
        assert seed_dates(s, env.settings.groups) == 0         # never again: the database owns them now
    env.rewrite({"SWIG": [MAR[:2] + ("Wellington Place, Leeds",), JAN, FEB], "SDIG": [FEB]})
    with env.sessions.begin() as s:
        assert seed_dates(s, env.settings.groups) == 0
        assert import_dates(s, env.settings.groups) == 2     # one place changed, one date added
    with env.sessions.begin() as s:
        assert import_dates(s, env.settings.groups) == 0     # idempotent
    assert env.rows() == [("SWIG", "Online"), ("SDIG", "Leeds"), ("SWIG", "Leeds"), ("SWIG", "Wellington Place, Leeds")]


def test_summer_time_dates_survive_the_database(tmp_path) -> None:
    env = Env(tmp_path, {"SWIG": [("2027-06-01T10:00:00", "2027-06-01T12:00:00", "Leeds")]})
    with env.sessions.begin() as s:
        seed_dates(s, env.settings.groups)
    with env.sessions() as s:
        [date] = upcoming_dates(s, "SWIG", london(2027, 5, 1, 0, 0))
        assert date.when == "Tuesday 1 June 2027, 10:00 to 12:00"
        assert upcoming_dates(s, "SWIG", london(2027, 6, 1, 9, 30)) == [date]    # 08:30 UTC: still to come
        assert upcoming_dates(s, "SWIG", london(2027, 6, 1, 10, 0)) == []
    with env.sessions.begin() as s:
        assert import_dates(s, env.settings.groups) == 0


def test_upcoming_dates_are_future_sorted_and_per_group(tmp_path) -> None:
    env = Env(tmp_path, {"SWIG": [MAR, JAN, FEB], "SDIG": [FEB]})
    with env.sessions.begin() as s:
        seed_dates(s, env.settings.groups)
    jan_start = london(2027, 1, 12, 10, 0)
    with env.sessions() as s:
        before = upcoming_dates(s, "SWIG", jan_start - dt.timedelta(minutes=1))
        at_start = upcoming_dates(s, "SWIG", jan_start)
        after_all = upcoming_dates(s, "SWIG", london(2027, 4, 1, 0, 0))
    assert [d.where for d in before] == ["Online", "Leeds", "Skipton House, London"]
    assert [d.when for d in at_start] == ["Tuesday 2 February 2027, 14:00 to 16:00", "Tuesday 9 March 2027, 10:00 to 12:30"]
    assert after_all == []
    assert len({d.uid for d in before}) == 3


def test_dates_cli_lists_what_applicants_will_be_told(tmp_path) -> None:
    now = dt.datetime.now(LONDON).replace(second=0, microsecond=0, tzinfo=None)
    past = ((now - dt.timedelta(days=400)).isoformat(), (now - dt.timedelta(days=400, hours=-2)).isoformat(), "Past")
    future = ((now + dt.timedelta(days=400)).isoformat(), (now + dt.timedelta(days=400, hours=2)).isoformat(), "Future")
    other = ((now + dt.timedelta(days=401)).isoformat(), (now + dt.timedelta(days=401, hours=2)).isoformat(), "Other")
    env = Env(tmp_path, {"SWIG": [past, future], "SDIG": [other]})
    listed = json.loads(env.cli("dates", "list", "--group", "swig", "--format", "json"))
    assert [(d["group"], d["where"]) for d in listed] == [("SWIG", "Future")]     # seeded on first use; past gone
    start = dt.datetime.fromisoformat(future[0]).replace(tzinfo=LONDON)
    assert listed[0]["when"] == format_when(start, start + dt.timedelta(hours=2))
    assert listed[0]["uid"].endswith("@intake")
    assert [d["group"] for d in json.loads(env.cli("dates", "list", "--format", "json"))] == ["SDIG", "SWIG"]
    table = env.cli("dates", "list", "--format", "table")
    assert "Future" in table and "Past" not in table
    env.rewrite({"SWIG": [past, future, other]})
    assert env.cli("dates", "import").startswith("1 dates added or updated")
    assert len(json.loads(env.cli("dates", "list", "--group", "SWIG", "--format", "json"))) == 2
