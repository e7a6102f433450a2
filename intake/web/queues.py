"""A group's queue: a sortable, filterable, searchable, paginated table."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from intake.web.access import audit, db, display_name, group_or_404, visible_codes
from intake.web.queries import SORTS, STATUSES, QueueFilter, message_counts
from intake.web.replies import bulk_choice

bp = Blueprint("queues", __name__)
PAGE_SIZE = 50


@bp.route("/queues")
def index() -> Response:
    codes = visible_codes()
    return redirect(url_for("queues.show", code=codes[0]) if codes else url_for("dashboard.index"))


@bp.route("/queues/<code>")
def show(code: str) -> str:
    code = group_or_404(code)
    filt = QueueFilter.from_args(code, request.args)
    session = db()
    total = filt.count(session)
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, request.args.get("page", 1, type=int) or 1), pages)
    rows = list(session.scalars(filt.select().limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)))
    counts = message_counts(session, (a.id for a in rows))
    audit("queue.view", target_type="queue", target_id=code, group_code=code,
          details={"status": filt.status, "search": bool(filt.search), "page": page, "rows": len(rows)})
    session.commit()
    return render_template("queue.html", code=code, display=display_name(code), filt=filt, rows=rows, counts=counts,
                           total=total, page=page, pages=pages, statuses=STATUSES, sorts=list(SORTS),
                           args={k: v for k, v in request.args.items() if k != "page"}, bulk=bulk_choice(code))
