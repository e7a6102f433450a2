"""The .ics attachment listing a group's upcoming dates (RFC 5545, Europe/London)."""

from __future__ import annotations

import datetime as dt
from typing import Sequence

import icalendar

from intake.ack.dates import UpcomingDate
from intake.clock import LONDON
from intake.groups import Group


def dates_calendar(entries: Sequence[tuple[Group, UpcomingDate]], *, now: dt.datetime) -> bytes:
    """One VEVENT per date (METHOD:PUBLISH: information, not an invitation).

    Building a calendar with its VTIMEZONE costs milliseconds; every applicant to a group
    gets the same one until the dates change, so it is built once per set of dates (its
    DTSTAMP is when it was first built)."""
    key = tuple((g.code, g.display, g.name, d.uid, d.start, d.end, d.where) for g, d in entries)
    found = _CACHE.get(key)
    if found is None:
        if len(_CACHE) > 64:  # dates rarely change: a small cache, simply reset when full
            _CACHE.clear()
        found = _CACHE[key] = _build(key, now.astimezone(dt.timezone.utc).replace(microsecond=0))
    return found


_CACHE: dict[tuple, bytes] = {}


def _build(key: tuple, now: dt.datetime) -> bytes:
    cal = icalendar.Calendar()
    cal.add("prodid", "-//intake//Building Leadership for Inclusion//EN")
    cal.add("version", "2.0")
    cal.add("method", "PUBLISH")
    for _code, display, name, uid, start, end, where in key:
        event = icalendar.Event()
        event.add("uid", uid)
        event.add("dtstamp", now)
        event.add("dtstart", start.astimezone(LONDON))
        event.add("dtend", end.astimezone(LONDON))
        event.add("summary", f"{display}: {name}")
        if where:
            event.add("location", where)
        cal.add_component(event)
    cal.add_missing_timezones()
    return cal.to_ical()
