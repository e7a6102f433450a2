"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL:
a model change without its migration (or the reverse) fails here, not in production."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from intake.db import MIGRATIONS_DIR, make_engine, upgrade
from intake.models import Base


def _head() -> str:
    """The newest revision in migrations/ (not a number written here, so adding a migration
    does not mean editing these tests)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()


def _current_revision(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'migrated.db'}"
    return request.getfixturevalue("postgres_url")


# SQLite's reflection cannot read expression indexes (the outbox's lower(...) ones), so
# Alembic skips comparing them there, with these warnings; PostgreSQL compares them, and
# tests/test_query_plans.py checks on SQLite that the reads they serve use them.
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based index")
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
def test_migrated_schema_matches_the_models(database_url) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_upgrading_twice_is_harmless(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'twice.db'}"
    upgrade(url)
    upgrade(url)
    assert _current_revision(url) == _head()


def test_workers_starting_together_on_a_new_postgresql_database_all_get_the_schema(postgres_url) -> None:
    """Every intake command migrates at start; four at once on an empty database must all
    succeed (one creates the schema, the others wait for it), not fail on 'already exists'."""
    import threading

    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            upgrade(postgres_url)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert _current_revision(postgres_url) == _head()
