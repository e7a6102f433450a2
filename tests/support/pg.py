"""Fresh PostgreSQL databases for tests, from one private server per test process.

INTAKE_TEST_DATABASE_URL names an existing server's database instead (each call then
returns that URL: the caller gets a shared database).
"""

from __future__ import annotations

import atexit
import os

_server = None


def fresh_postgres_url() -> str:
    global _server
    if os.environ.get("INTAKE_TEST_DATABASE_URL"):
        return os.environ["INTAKE_TEST_DATABASE_URL"]
    if _server is None:
        from tests.servers.postgres import Postgres

        _server = Postgres().start()
        atexit.register(_server.stop)
    return _server.create_database()


def use_postgres() -> bool:
    """True when the suite runs on PostgreSQL (make test's second pass)."""
    return os.environ.get("INTAKE_TEST_DB", "sqlite") == "postgres"
