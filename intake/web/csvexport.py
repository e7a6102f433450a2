"""A queue as CSV for a spreadsheet (pure): the chosen columns, UTF-8 with a BOM.

Data-minimising by default: free text (notes, message bodies) only when asked for.
Cells that a spreadsheet would run as a formula (=, +, -, @ ...) are prefixed with an
apostrophe, because applicant-supplied names reach Excel through this file.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any, Callable, Iterable, Iterator, Sequence

from intake.models import Application

BOM = "\ufeff"
DEFAULT_COLUMNS = ("reference", "group", "status", "name", "email", "job_title", "organisation", "received_at",
                   "message_count")
OPTIONAL_COLUMNS = ("id", "status_changed_at", "updated_at", "route_reason", "notes", "first_message")
FREE_TEXT = frozenset({"notes", "first_message", "route_reason"})
ALL_COLUMNS = DEFAULT_COLUMNS + OPTIONAL_COLUMNS
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

Row = Callable[[Application, int], dict[str, Any]]


def choose_columns(requested: Sequence[str]) -> tuple[str, ...]:
    """The requested known columns in table order; the defaults when none are requested."""
    chosen = [c for c in ALL_COLUMNS if c in set(requested)]
    return tuple(chosen) or DEFAULT_COLUMNS


def values(app: Application, message_count: int, first_message: str = "") -> dict[str, Any]:
    return {"id": app.id, "reference": app.reference, "group": app.group_code, "status": app.status,
            "name": app.name, "email": app.email, "job_title": app.job_title, "organisation": app.organisation,
            "received_at": app.received_at, "message_count": message_count, "status_changed_at": app.status_changed_at,
            "updated_at": app.updated_at, "route_reason": app.route_reason, "notes": app.notes,
            "first_message": first_message}


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.replace(microsecond=0).isoformat(sep=" ")
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def lines(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """The CSV text in pieces: BOM and header first, then one piece per row."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")

    def take() -> str:
        text = buf.getvalue()
        buf.seek(0)
        buf.truncate()
        return text

    writer.writerow(columns)
    yield BOM + take()
    for row in rows:
        writer.writerow([cell(row.get(c)) for c in columns])
        yield take()
