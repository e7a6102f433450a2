"""Group dates: seeded from groups.toml, kept in the database, shown the British way."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from dataclasses import dataclass
from typing import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from intake.clock import LONDON, utc
from intake.groups import Group, GroupDate
from intake.models import GroupDateRow


@dataclass(frozen=True)
class UpcomingDate:
    uid: str
    start: dt.datetime  # aware
    end: dt.datetime
    where: str

    @property
    def when(self) -> str:
        return format_when(self.start, self.end)


@functools.lru_cache(maxsize=1024)  # every acknowledgement to a group shows the same few dates
def format_when(start: dt.datetime, end: dt.datetime) -> str:
    """'Tuesday 12 January 2027, 10:00 to 12:00' in Europe/London time."""
    s, e = start.astimezone(LONDON), end.astimezone(LONDON)
    day = f"{s:%A} {s.day} {s:%B %Y}"
    if s.date() == e.date():
        return f"{day}, {s:%H:%M} to {e:%H:%M}"
    return f"{day}, {s:%H:%M} to {e:%A} {e.day} {e:%B %Y}, {e:%H:%M}"


def as_utc(value: dt.datetime) -> dt.datetime:
    """Aware UTC. SQLite keeps a datetime's wall time and drops its zone, so a London date
    in summer time must be converted before it is stored, or it comes back an hour out."""
    return utc(value).astimezone(dt.timezone.utc)


def stable_uid(group_code: str, date: GroupDate) -> str:
    """The same configured date always gets the same iCalendar UID (the key is the start as
    written in groups.toml, London time with its offset: kept as first released)."""
    digest = hashlib.sha256(f"{group_code}|{utc(date.start).isoformat()}".encode()).hexdigest()[:20]
    return f"{group_code.lower()}-{digest}@intake"


def seed_dates(session: Session, groups: Sequence[Group]) -> int:
    """First start: copy groups.toml's dates for each group that has none in the database."""
    added = 0
    for group in groups:
        has = session.execute(select(func.count()).select_from(GroupDateRow).where(GroupDateRow.group_code == group.code)).scalar_one()
        if has:
            continue
        for date in group.dates:
            session.add(_row(group.code, date))
            added += 1
    return added


def import_dates(session: Session, groups: Sequence[Group]) -> int:
    """`intake dates import`: add or update the file's dates (matched by stable UID)."""
    changed = 0
    for group in groups:
        for date in group.dates:
            uid = stable_uid(group.code, date)
            row = session.execute(select(GroupDateRow).where(GroupDateRow.uid == uid)).scalar_one_or_none()
            if row is None:
                session.add(_row(group.code, date))
                changed += 1
            elif (as_utc(row.end), row.where) != (as_utc(date.end), date.where):
                row.end, row.where = as_utc(date.end), date.where
                changed += 1
    return changed


def _row(group_code: str, date: GroupDate) -> GroupDateRow:
    return GroupDateRow(group_code=group_code, start=as_utc(date.start), end=as_utc(date.end), where=date.where,
                        uid=stable_uid(group_code, date))


def upcoming_dates(session: Session, group_code: str, now: dt.datetime) -> list[UpcomingDate]:
    """Dates still in the future at `now`, soonest first."""
    rows = session.execute(select(GroupDateRow).where(GroupDateRow.group_code == group_code).order_by(GroupDateRow.start)).scalars()
    return [UpcomingDate(r.uid, utc(r.start), utc(r.end), r.where) for r in rows if utc(r.start) > now]
