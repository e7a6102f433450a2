"""The audit trail for admins: who did what, when, filtered and paginated."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, render_template, request
from sqlalchemy import func, select

from intake.models import AuditEvent
from intake.web.access import db, require_admin

bp = Blueprint("audit", __name__)
PAGE_SIZE = 100
FILTERS = ("actor", "action", "group_code", "target_id")


@bp.route("/audit")
def index() -> str:
    require_admin()
    args = {k: request.args.get(k, "").strip() for k in FILTERS + ("since", "until")}
    clauses = []
    if args["actor"]:
        clauses.append(AuditEvent.actor.icontains(args["actor"], autoescape=True))
    if args["action"]:
        clauses.append(AuditEvent.action.startswith(args["action"], autoescape=True))
    if args["group_code"]:
        clauses.append(AuditEvent.group_code == args["group_code"].upper())
    if args["target_id"]:
        clauses.append(AuditEvent.target_id == args["target_id"])
    for key, op in (("since", AuditEvent.at.__ge__), ("until", AuditEvent.at.__lt__)):
        try:
            day = dt.date.fromisoformat(args[key]) if args[key] else None
        except ValueError:
            day = None
        if day:
            moment = dt.datetime.combine(day + dt.timedelta(days=1 if key == "until" else 0), dt.time(), dt.timezone.utc)
            clauses.append(op(moment))
    session = db()
    total = session.scalar(select(func.count()).select_from(AuditEvent).where(*clauses)) or 0
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, request.args.get("page", 1, type=int) or 1), pages)
    events = list(session.scalars(select(AuditEvent).where(*clauses).order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
                                  .limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)))
    return render_template("audit.html", events=events, args=args, total=total, page=page, pages=pages,
                           query={k: v for k, v in args.items() if v})
