"""CSV export of a queue, streamed: a column chooser page and the download itself."""

from __future__ import annotations

from typing import Any, Iterator

from flask import Blueprint, Response, render_template, request, stream_with_context

from intake.web.access import audit, db, display_name, group_or_404
from intake.web.csvexport import ALL_COLUMNS, DEFAULT_COLUMNS, FREE_TEXT, choose_columns, lines, values
from intake.web.queries import STATUSES, QueueFilter, message_counts
from intake.web.state import state

bp = Blueprint("export", __name__)
BATCH = 500


@bp.route("/queues/<code>/export")
def choose(code: str) -> str:
    code = group_or_404(code)
    return render_template("export.html", code=code, display=display_name(code), columns=ALL_COLUMNS,
                           defaults=DEFAULT_COLUMNS, free_text=FREE_TEXT, statuses=STATUSES,
                           status=request.args.get("status", ""))


@bp.route("/export/<code>.csv")
def download(code: str) -> Response:
    code = group_or_404(code)
    filt = QueueFilter.from_args(code, request.args)
    columns = choose_columns(request.args.getlist("columns"))
    session = db()
    total = filt.count(session)
    audit("queue.export", target_type="queue", target_id=code, group_code=code,
          details={"columns": list(columns), "status": filt.status, "search": bool(filt.search), "rows": total})
    session.commit()
    filename = f"{code}-{state().clock.now():%Y-%m-%d}.csv"
    response = Response(stream_with_context(lines(columns, _rows(filt, "first_message" in columns))),
                        mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{filename}"'})
    response.charset = "utf-8"
    return response


def _rows(filt: QueueFilter, with_body: bool) -> Iterator[dict[str, Any]]:
    """Rows in batches (keyset on the sort order would be faster; batches keep memory flat)."""
    sessions = state().sessions
    offset = 0
    with sessions() as session:
        while True:
            batch = list(session.scalars(filt.select().limit(BATCH).offset(offset)))
            if not batch:
                return
            counts = message_counts(session, (a.id for a in batch))
            for app in batch:
                body = app.messages[0].body_text if with_body and app.messages else ""
                yield values(app, counts.get(app.id, 0), body)
            session.expunge_all()
            offset += BATCH
