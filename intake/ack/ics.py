"""The .ics attachment listing a group's upcoming dates (RFC 5545, Europe/London)."""

from __future__ import annotations

import datetime as dt
from typing import Sequence

import icalendar

from intake.ack.dates import UpcomingDate
from intake.clock import LONDON
from intake.groups import Group


def dates_calendar(entries: Sequence[tuple[Group, UpcomingDate]], *, now: dt.datetime) -> bytes:
    """One VEVENT per date (METHOD:PUBLISH: information, not an invitation)."""
    cal = icalendar.Calendar()
    cal.add("prodid", "-//intake//Building Leadership for Inclusion//EN")
    cal.add("version", "2.0")
    cal.add("method", "PUBLISH")
    for group, date in entries:
        event = icalendar.Event()
        event.add("uid", date.uid)
        event.add("dtstamp", now)
        event.add("dtstart", date.start.astimezone(LONDON))
        event.add("dtend", date.end.astimezone(LONDON))
        event.add("summary", f"{group.display}: {group.name}")
        if date.where:
            event.add("location", date.where)
        cal.add_component(event)
    cal.add_missing_timezones()
    return cal.to_ical()
