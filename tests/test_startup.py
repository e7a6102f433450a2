"""Several workers starting at once on one PostgreSQL database: the first-start seeding of the
groups' dates races, and the loser must carry on, not crash (seen in the three-worker test)."""

from __future__ import annotations

import threading
import time

from sqlalchemy import func, select, text

from intake.ack import seed_dates
from intake.config import load_settings
from intake.db import make_engine, make_sessionmaker, upgrade
from intake.models import GroupDateRow
from intake.worker import prepare
from tests.support.config import write_config


def test_a_worker_that_loses_the_seeding_race_carries_on(tmp_path, postgres_url) -> None:
    settings = load_settings(write_config(tmp_path, mailboxes=[], database_url=postgres_url), env={})
    expected = sum(len(g.dates) for g in settings.groups)
    assert expected > 0
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    sessions = make_sessionmaker(engine)
    errors: list[BaseException] = []

    def second_worker() -> None:
        try:
            prepare(settings, sessions)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    try:
        first = sessions()
        first.begin()
        seed_dates(first, settings.groups)
        first.flush()  # inserted, not committed: the second worker sees no dates yet
        other = threading.Thread(target=second_worker)
        other.start()
        # Wait until the second worker is blocked on our uncommitted rows (same unique UIDs).
        deadline = time.monotonic() + 20
        with engine.connect() as probe:
            while not probe.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar():
                assert time.monotonic() < deadline, "the second worker never reached the insert"
                time.sleep(0.05)
        first.commit()
        first.close()
        other.join(timeout=20)
        assert not other.is_alive()
        assert errors == []
        with sessions() as session:
            assert session.scalar(select(func.count()).select_from(GroupDateRow)) == expected
    finally:
        engine.dispose()
