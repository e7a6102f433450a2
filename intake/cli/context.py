"""What every command shares: settings (loaded once), the database, the clock."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from intake.clock import Clock, SystemClock
from intake.config import Settings, load_settings


class AppContext:
    """Lazily built shared state for one CLI invocation."""

    def __init__(self, config_path: str | None, clock: Clock | None = None):
        self.config_path = config_path
        self.clock: Clock = clock or SystemClock()

    @functools.cached_property
    def settings(self) -> Settings:
        return load_settings(self.config_path)

    @functools.cached_property
    def engine(self) -> Engine:
        from intake.db import make_engine, upgrade

        url = self.settings["database.url"]
        upgrade(url)  # cheap when already at head; keeps every command on the current schema
        return make_engine(url, busy_timeout=self.settings["database.busy_timeout"])

    @functools.cached_property
    def sessions(self) -> sessionmaker[Session]:
        from intake.db import make_sessionmaker

        return make_sessionmaker(self.engine)

    def audit(self, session: Session, action: str, **fields: Any) -> None:
        from intake.audit import record

        record(session, actor="cli", action=action, **fields)
