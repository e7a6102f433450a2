"""One application: its fields, its thread of messages, its acknowledgements, and the
actions on it (each one form post, each audited)."""

from __future__ import annotations

import re
from urllib.parse import quote

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import or_, select

from intake.crypto import DecryptError, KeyMissing, RawCipher
from intake.domain import TRIAGE
from intake.models import Application, AttachmentRow, Outbox, OutboxApplication
from intake.web import actions
from intake.web.access import account, all_codes, application_or_404, audit, db, display_name
from intake.web.emailview import blocked_resources, sanitise
from intake.web.replies import reply_choice
from intake.web.state import state
from intake.web.workflow import LABELS, next_statuses

bp = Blueprint("applications", __name__)
_TYPE = re.compile(r"[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*", re.IGNORECASE)


@bp.route("/applications/<int:application_id>")
def show(application_id: int) -> str:
    app = application_or_404(application_id)
    session = db()
    html_for = request.args.get("html", type=int)
    thread = [{"m": m, "html": sanitise(m.body_html) if (m.id == html_for and m.body_html) else None,
               "blocked": blocked_resources(m.body_html) if m.id == html_for else 0} for m in app.messages]
    outbox = list(session.scalars(select(Outbox).join(OutboxApplication)
                                  .where(OutboxApplication.application_id == app.id).order_by(Outbox.created_at)))
    duplicates = _possible_duplicates(app)
    merged_into = session.get(Application, app.merged_into_id) if app.merged_into_id else None
    audit("application.view", target_type="application", target_id=app.id, group_code=app.group_code,
          details={"html_message": html_for} if html_for else {})
    session.commit()
    targets = [(c, display_name(c)) for c in all_codes() + (TRIAGE,) if c != app.group_code]
    return render_template("application.html", app=app, thread=thread, outbox=outbox, duplicates=duplicates,
                           merged_into=merged_into, next_statuses=next_statuses(app.status), labels=LABELS,
                           targets=targets, display=display_name(app.group_code), reply=reply_choice(app))


def _possible_duplicates(app: Application) -> list[Application]:
    """Other open applications in the same queue with the same name or email (a merge hint)."""
    clauses = [Application.name == app.name] if app.name else []
    if app.email:
        clauses.append(Application.email == app.email)
    if not clauses:
        return []
    return list(db().scalars(select(Application).where(
        Application.group_code == app.group_code, Application.id != app.id,
        Application.merged_into_id.is_(None), or_(*clauses)).limit(10)))


def _done(app: Application, message: str) -> Response:
    db().commit()
    flash(message)
    return redirect(url_for("applications.show", application_id=app.id))


def _refused(app: Application, exc: actions.ActionRefused) -> Response:
    db().rollback()
    flash(str(exc), "error")
    return redirect(url_for("applications.show", application_id=app.id))


@bp.route("/applications/<int:application_id>/status", methods=["POST"])
def set_status(application_id: int) -> Response:
    app = application_or_404(application_id)
    try:
        details = actions.change_status(app, request.form.get("status", ""), state().clock.now())
    except actions.ActionRefused as exc:
        return _refused(app, exc)
    audit("application.status", target_type="application", target_id=app.id, group_code=app.group_code, details=details)
    return _done(app, f"Status changed to {details['to']}.")


@bp.route("/applications/<int:application_id>/fields", methods=["POST"])
def edit(application_id: int) -> Response:
    app = application_or_404(application_id)
    details = actions.edit_fields(app, request.form.to_dict())
    audit("application.edit", target_type="application", target_id=app.id, group_code=app.group_code, details=details)
    return _done(app, "Saved." if details["fields"] else "Nothing changed.")


@bp.route("/applications/<int:application_id>/move", methods=["POST"])
def move(application_id: int) -> Response:
    app = application_or_404(application_id)
    target = request.form.get("group", "").upper()
    if target not in all_codes() + (TRIAGE,):
        return _refused(app, actions.ActionRefused("Choose a queue to move it to."))
    source = app.group_code
    try:
        result, details = actions.move(db(), app, target, request.form.get("reason", ""), account().email)
    except actions.ActionRefused as exc:
        return _refused(app, exc)
    audit("application.move", target_type="application", target_id=app.id, group_code=source,
          details={**details, "reason": request.form.get("reason", "").strip()[:500]})
    db().commit()
    flash(f"Moved to {display_name(target)}.")
    if account().can_see(target):
        return redirect(url_for("applications.show", application_id=result.id))
    return redirect(url_for("queues.show", code=source))


@bp.route("/applications/<int:application_id>/merge", methods=["POST"])
def merge(application_id: int) -> Response:
    app = application_or_404(application_id)
    duplicate = _find(request.form.get("duplicate", ""))
    if duplicate is None or duplicate.group_code != app.group_code:
        return _refused(app, actions.ActionRefused("No application with that reference in this queue."))
    try:
        details = actions.merge(db(), keep=app, duplicate=duplicate)
    except actions.ActionRefused as exc:
        return _refused(app, exc)
    audit("application.merge", target_type="application", target_id=app.id, group_code=app.group_code, details=details)
    return _done(app, f"Merged {duplicate.reference or duplicate.id} into this application.")


def _find(ref: str) -> Application | None:
    """An application the account may see, by reference (BLFI-000123) or id."""
    ref = ref.strip()
    session = db()
    found = session.get(Application, int(ref)) if ref.isdigit() else session.scalar(
        select(Application).where(Application.reference == ref.upper()))
    return found if found is not None and account().can_see(found.group_code) else None


@bp.route("/applications/<int:application_id>/attachments/<int:attachment_id>")
def attachment(application_id: int, attachment_id: int) -> Response:
    app = application_or_404(application_id)
    att = db().get(AttachmentRow, attachment_id)
    if att is None or att.message not in app.messages:
        abort(404)
    if att.data is None:
        abort(410, description="This attachment has been deleted under the retention policy.")
    try:
        data = RawCipher.from_settings(state().settings).open(att.data, att.encrypted)
    except (KeyMissing, DecryptError):
        abort(500, description="This attachment is encrypted and the key is not available to the web app.")
    audit("attachment.download", target_type="application", target_id=app.id, group_code=app.group_code,
          details={"attachment": att.id})
    db().commit()
    return _download(data, att.filename or f"attachment-{att.id}", att.content_type)


def _download(data: bytes, filename: str, content_type: str) -> Response:
    mimetype = content_type if _TYPE.fullmatch(content_type or "") else "application/octet-stream"
    response = Response(data, mimetype=mimetype)
    # Always a download, never rendered in our origin; sandboxed even if a browser tried.
    fallback = re.sub(r'[^A-Za-z0-9._ -]', "_", filename)[:150] or "attachment"
    response.headers["Content-Disposition"] = f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename[:150])}"
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response
