"""A group's upcoming dates: its coordinators (and admins) add, edit and remove them."""

from __future__ import annotations

import datetime as dt
from uuid import uuid4

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from intake.clock import LONDON, utc
from intake.models import GroupDateRow
from intake.web.access import account, all_codes, audit, db, display_name
from intake.web.state import state

bp = Blueprint("dates", __name__)


def _groups() -> list[str]:
    return [c for c in all_codes() if account().can_see(c)]


@bp.route("/dates")
def index() -> str:
    codes = _groups()
    now = state().clock.now()
    rows = list(db().scalars(select(GroupDateRow).where(GroupDateRow.group_code.in_(codes))
                             .order_by(GroupDateRow.group_code, GroupDateRow.start)))
    by_group = {c: [r for r in rows if r.group_code == c] for c in codes}
    return render_template("dates.html", by_group=by_group, names={c: display_name(c) for c in codes},
                           now=now, local=_local, utc=utc)


def _local(value: dt.datetime) -> str:
    """The value for an <input type=datetime-local>, in London time."""
    return utc(value).astimezone(LONDON).strftime("%Y-%m-%dT%H:%M")


def _parse(form_value: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(form_value).replace(tzinfo=LONDON).astimezone(dt.timezone.utc)
    except ValueError:
        return None


def _read_form() -> tuple[dt.datetime, dt.datetime, str] | str:
    start, end = _parse(request.form.get("start", "")), _parse(request.form.get("end", ""))
    where = request.form.get("where", "").strip()[:500]
    if start is None:
        return "Enter the start date and time."
    end = end or start
    if end < start:
        return "The end is before the start."
    return start, end, where


def _own(row_id: int) -> GroupDateRow:
    row = db().get(GroupDateRow, row_id)
    if row is None or not account().can_see(row.group_code):
        abort(404)
    return row


@bp.route("/dates/<code>/add", methods=["POST"])
def add(code: str) -> Response:
    code = code.upper()
    if code not in _groups():
        abort(404)
    parsed = _read_form()
    if isinstance(parsed, str):
        flash(parsed, "error")
        return redirect(url_for("dates.index"))
    start, end, where = parsed
    row = GroupDateRow(group_code=code, start=start, end=end, where=where, uid=f"{uuid4()}@intake")
    db().add(row)
    db().flush()
    audit("date.add", target_type="group_date", target_id=row.id, group_code=code)
    db().commit()
    flash("Date added.")
    return redirect(url_for("dates.index"))


@bp.route("/dates/<int:row_id>/edit", methods=["POST"])
def edit(row_id: int) -> Response:
    row = _own(row_id)
    parsed = _read_form()
    if isinstance(parsed, str):
        flash(parsed, "error")
        return redirect(url_for("dates.index"))
    row.start, row.end, row.where = parsed  # the uid stays: calendars update the same event
    audit("date.edit", target_type="group_date", target_id=row.id, group_code=row.group_code)
    db().commit()
    flash("Date saved.")
    return redirect(url_for("dates.index"))


@bp.route("/dates/<int:row_id>/delete", methods=["POST"])
def delete(row_id: int) -> Response:
    row = _own(row_id)
    audit("date.delete", target_type="group_date", target_id=row.id, group_code=row.group_code,
          details={"start": utc(row.start).isoformat()})
    db().delete(row)
    db().commit()
    flash("Date removed.")
    return redirect(url_for("dates.index"))
