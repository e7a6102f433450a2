"""The dashboard: counts per group and status, new this week, oldest untouched, a weekly chart."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flask import Blueprint, render_template
from sqlalchemy import func, select

from intake.clock import LONDON, utc
from intake.domain import Status
from intake.models import Application
from intake.store import needing_attention
from intake.web.access import account, db, display_name, visible_codes
from intake.web.chart import legend, weekly_bars
from intake.web.state import state

bp = Blueprint("dashboard", __name__)
WEEKS = 8
ATTENTION_LISTED = 25


def _open(codes: tuple[str, ...]):  # type: ignore[no-untyped-def]
    return (Application.group_code.in_(codes), Application.merged_into_id.is_(None))


@bp.route("/")
def index() -> str:
    codes = visible_codes()
    now = state().clock.now()
    session = db()
    counts: dict[str, dict[str, int]] = {c: {s.value: 0 for s in Status} for c in codes}
    for code, status, n in session.execute(
            select(Application.group_code, Application.status, func.count()).where(*_open(codes))
            .group_by(Application.group_code, Application.status)):
        counts[code][status] = n
    week_ago = now - dt.timedelta(days=7)
    new_this_week = dict(session.execute(
        select(Application.group_code, func.count()).where(*_open(codes), Application.received_at >= week_ago)
        .group_by(Application.group_code)).all())
    oldest = {code: utc(at) for code, at in session.execute(
        select(Application.group_code, func.min(Application.received_at))
        .where(*_open(codes), Application.status == Status.NEW.value).group_by(Application.group_code))}
    weeks, series = _weekly(codes, now)
    rows = [{"code": c, "display": display_name(c), "counts": counts[c], "total": sum(counts[c].values()),
             "new_this_week": new_this_week.get(c, 0), "oldest_new": oldest.get(c),
             "oldest_days": (now - oldest[c]).days if c in oldest else None} for c in codes]
    names = [display_name(c) for c in codes]
    attention = _needs_attention(codes)
    for r in rows:
        r["attention"] = attention.per_group.get(r["code"], 0)
    return render_template("dashboard.html", rows=rows, statuses=[s.value for s in Status], attention=attention,
                           display_names={c: display_name(c) for c in codes},
                           chart=weekly_bars(weeks, {display_name(c): series[c] for c in codes}),
                           legend=legend(names), weeks=weeks, series=series, codes=codes,
                           credential_warnings=_credential_warnings(now))


def _credential_warnings(now: dt.datetime) -> list[str]:
    """Mail sign-in problems (OAuth 2.0 secret expiry, failed refreshes), for admins only:
    the texts name mailboxes, accounts and token files, which coordinators need not see."""
    if not account().is_admin:
        return []
    from intake.oauth import settings_warnings

    return settings_warnings(state().settings, now)


@dataclass(frozen=True)
class Attention:
    """Applications whose applicant answered and nobody has acted since (the pipeline sets
    the flag on a follow-up; a reply or a status change clears it)."""

    total: int
    per_group: dict[str, int]
    rows: list[Application]


def _needs_attention(codes: tuple[str, ...]) -> Attention:
    where = needing_attention(codes)
    per_group = dict(db().execute(select(Application.group_code, func.count()).where(*where)
                                  .group_by(Application.group_code)).all())
    rows = list(db().scalars(select(Application).where(*where)
                             .order_by(Application.updated_at, Application.id).limit(ATTENTION_LISTED)))
    return Attention(sum(per_group.values()), per_group, rows)


def _weekly(codes: tuple[str, ...], now: dt.datetime) -> tuple[list[str], dict[str, list[int]]]:
    """Applications received per week (Monday-based, London time) for the last WEEKS weeks."""
    today = now.astimezone(LONDON).date()
    first = today - dt.timedelta(days=today.weekday() + 7 * (WEEKS - 1))
    start = dt.datetime.combine(first, dt.time(), LONDON)
    series = {c: [0] * WEEKS for c in codes}
    hour = _hour_of(Application.received_at)
    query = (select(Application.group_code, hour, func.count())
             .where(*_open(codes), Application.received_at >= start).group_by(Application.group_code, hour))
    for code, received, count in db().execute(query):
        if isinstance(received, str):  # SQLite's strftime: UTC wall-clock text
            received = dt.datetime.fromisoformat(received)
        index = (utc(received).astimezone(LONDON).date() - first).days // 7
        if 0 <= index < WEEKS:
            series[code][index] += count
    labels = [(first + dt.timedelta(weeks=i)).strftime("%d %b") for i in range(WEEKS)]
    return labels, series


def _hour_of(column):  # type: ignore[no-untyped-def]
    """The column truncated to the hour, in SQL: the chart then reads at most one row per
    group per hour (London's offset from UTC is whole hours, so weeks still split exactly)
    rather than one row per application, which is most of the cost at 50,000."""
    if db().get_bind().dialect.name == "postgresql":
        return func.date_trunc("hour", column)
    return func.strftime("%Y-%m-%d %H:00:00", column)
