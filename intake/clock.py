"""Time as an injected dependency: code asks a Clock, tests hand in a fixed one."""

from __future__ import annotations

import datetime as dt
from typing import Protocol
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, timezone-aware (UTC)."""


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)


class FixedClock:
    """A clock that says what it is told; tests move it by hand."""

    def __init__(self, at: dt.datetime):
        self.at = at if at.tzinfo else at.replace(tzinfo=dt.timezone.utc)

    def now(self) -> dt.datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at = self.at + dt.timedelta(**delta)


def utc(value: dt.datetime) -> dt.datetime:
    """Naive datetimes from the database are UTC; make them aware."""
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
