"""The dashboard's applications-per-week chart counts in the right week, London time, on
SQLite and on PostgreSQL (the counting is done in SQL, by hour, differently on each)."""

from __future__ import annotations

import datetime as dt

import pytest

from intake.config import load_settings
from intake.db import make_engine, make_sessionmaker, upgrade
from intake.models import Application
from tests.support.config import write_config

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 7, 15, 12, 0, tzinfo=UTC)  # a Wednesday in British Summer Time


def _weekly(database_url: str, tmp_path, rows: list[tuple[str, dt.datetime]]):  # type: ignore[no-untyped-def]
    from intake.web import create_app
    from intake.web.dashboard import _weekly as weekly

    settings = load_settings(write_config(tmp_path, mailboxes=[], database_url=database_url), env={})
    upgrade(database_url)
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    try:
        with sessions.begin() as session:
            session.add_all(Application(group_code=code, status="new", email=f"p{i}@nhs.example", received_at=at)
                            for i, (code, at) in enumerate(rows))
        app = create_app(settings, sessions=sessions)
        with app.test_request_context("/"):
            return weekly(("SWIG", "SDIG"), NOW)
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'chart.db'}"
    return request.getfixturevalue("postgres_url")


def test_weeks_start_on_monday_london_time_and_count_per_group(database_url, tmp_path) -> None:
    rows = [
        ("SWIG", dt.datetime(2026, 7, 12, 23, 30, tzinfo=UTC)),  # Monday 00:30 in London: this week
        ("SWIG", dt.datetime(2026, 7, 12, 22, 30, tzinfo=UTC)),  # Sunday 23:30 in London: last week
        ("SWIG", dt.datetime(2026, 7, 14, 10, 0, tzinfo=UTC)),
        ("SWIG", dt.datetime(2026, 7, 14, 10, 59, tzinfo=UTC)),  # same hour: counted twice, not once
        ("SDIG", dt.datetime(2026, 6, 1, 9, 0, tzinfo=UTC)),
        ("SWIG", dt.datetime(2026, 5, 1, 9, 0, tzinfo=UTC)),    # older than the eight weeks shown
        ("SBAMEIG", dt.datetime(2026, 7, 14, 9, 0, tzinfo=UTC)),  # a group not asked for
    ]
    labels, series = _weekly(database_url, tmp_path / "cfg", rows)
    assert labels[0] == "25 May" and labels[-1] == "13 Jul"
    assert series["SWIG"] == [0, 0, 0, 0, 0, 0, 1, 3]
    assert series["SDIG"] == [0, 1, 0, 0, 0, 0, 0, 0]
    assert set(series) == {"SWIG", "SDIG"}
