"""Writing to applicants from the app: one reply from an application page, or the same
template to each of several applications chosen in a queue.

Drafting, threading and queueing are intake.replies' job; this blueprint checks access
(another group's application answers 404, or is left out of a bulk send), reads the forms,
and shows the draft for editing or the bulk preview. Nothing here speaks SMTP: a sent reply
is an outbox row, and its delivery status shows on the application page.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from intake.clock import utc
from intake.domain import TRIAGE
from intake.models import Application, User
from intake.replies import (TEMPLATES, Draft, ReplyComposer, ReplyError, SessionDate, already_sent, new_send_key,
                            send_bulk, status_after, upcoming_sessions, valid_send_key)
from intake.web.access import account, all_codes, application_or_404, audit, client_ip, db, display_name, group_or_404
from intake.web.state import state

bp = Blueprint("replies", __name__)
LABELS = {"invitation": "Invitation to a session", "more_information": "More information needed",
          "accepted": "Accepted: welcome", "declined": "Declined", "general": "General reply"}
SUBJECT_MAX, BODY_MAX, BULK_MAX = 300, 20000, 200


@dataclass(frozen=True)
class Choice:
    """What the reply form offers: templates, the group's upcoming dates, or why not."""

    templates: tuple[tuple[str, str], ...]
    dates: tuple[SessionDate, ...]
    blocked: str = ""


def _composer() -> ReplyComposer:
    return ReplyComposer(state().settings)


def _coordinator_name() -> str:
    user = db().get(User, account().id)
    return user.name if user is not None and user.name else account().email


def _blocked(app: Application) -> str:
    if app.merged_into_id is not None:
        return "This application was merged into another one: reply there."
    if app.email is None:
        return "This application has been anonymised; there is no one to write to."
    if app.group_code not in all_codes():
        return "Move this application to a group before replying."
    return ""


def reply_choice(app: Application) -> Choice:
    """The application page's Reply section."""
    blocked = _blocked(app)
    dates = () if blocked else tuple(upcoming_sessions(db(), app.group_code, state().clock.now()))
    return Choice(tuple(LABELS.items()), dates, blocked)


def bulk_choice(code: str) -> Choice | None:
    """The queue page's bulk form (None for triage, which has no group to write from)."""
    if code == TRIAGE:
        return None
    return Choice(tuple(LABELS.items()), tuple(upcoming_sessions(db(), code, state().clock.now())))


def _template(value: str) -> str:
    if value not in TEMPLATES:
        raise ReplyError("Choose one of the reply templates.")
    return value


def _session_start(template: str, value: str) -> dt.datetime | None:
    """The chosen session (an ISO datetime from the form); only an invitation uses one."""
    if template != "invitation" or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ReplyError("Choose one of the listed dates.") from None
    if parsed.tzinfo is None:
        raise ReplyError("Choose one of the listed dates.")
    return utc(parsed)


def _sender(code: str) -> str:
    group = state().settings.group(code)
    return group.addresses[0] if group.addresses else state().settings["smtp.from_address"]


def _editor(app: Application, draft: Draft, *, date: str, error: str = "", status: int = 200,
            send_key: str = "") -> Response:
    body = render_template("reply.html", app=app, draft=draft, date=date, error=error, choice=reply_choice(app),
                           send_key=send_key if valid_send_key(send_key) else new_send_key(),
                           label=LABELS[draft.template], sender=_sender(app.group_code),
                           status_after=status_after(app.status, draft.template), display=display_name(app.group_code))
    return Response(body, status=status)


def _back(app: Application, message: str) -> Response:
    db().rollback()
    flash(message, "error")
    return redirect(url_for("applications.show", application_id=app.id))


@bp.route("/applications/<int:application_id>/reply")
def draft(application_id: int) -> Response:
    """The editor, prefilled from the chosen template (a GET: drafting changes nothing)."""
    app = application_or_404(application_id)
    if _blocked(app):
        return _back(app, _blocked(app))
    date = request.args.get("date", "")
    try:
        template = _template(request.args.get("template", "general"))
        drafted = _composer().draft(db(), app, template, coordinator_name=_coordinator_name(),
                                    now=state().clock.now(), session_start=_session_start(template, date))
    except ReplyError as exc:
        return _back(app, str(exc))
    audit("reply.draft", target_type="application", target_id=app.id, group_code=app.group_code,
          details={"template": template})
    db().commit()
    return _editor(app, drafted, date=date if drafted.session else "")


@bp.route("/applications/<int:application_id>/reply", methods=["POST"])
def send(application_id: int) -> Response:
    """Queue the coordinator's final text in the outbox, move the application on, audit it."""
    app = application_or_404(application_id)
    if _blocked(app):
        return _back(app, _blocked(app))
    form = request.form
    subject = " ".join(form.get("subject", "").split())
    text = form.get("body", "").replace("\r\n", "\n")
    date = form.get("date", "")
    send_key = form.get("send_key", "")
    try:
        template = _template(form.get("template", ""))
        if not valid_send_key(send_key):
            raise ReplyError("This form is out of date: write the reply again.")
    except ReplyError as exc:
        return _back(app, str(exc))
    composer, now = _composer(), state().clock.now()
    final = Draft(template=template, subject=subject, body=text)
    try:
        # Re-drafting checks the date is (still) an upcoming one and gives the .ics its session.
        chosen = composer.draft(db(), app, template, coordinator_name=_coordinator_name(), now=now,
                                session_start=_session_start(template, date)).session
        final = Draft(template=template, subject=subject, body=text, session=chosen)
        if not subject:
            raise ReplyError("Enter a subject.")
        if not text.strip():
            raise ReplyError("Write the message.")
        if len(subject) > SUBJECT_MAX or len(text) > BODY_MAX:
            raise ReplyError(f"The subject can be {SUBJECT_MAX} characters and the message {BODY_MAX} at most.")
        if already_sent(db(), state().settings, send_key):
            flash("This reply was already queued (the form was sent twice); it goes out once.")
            return redirect(url_for("applications.show", application_id=app.id) + "#sent-h")
        composer.enqueue(db(), app, final, actor=account().email, now=now, ip=client_ip(), send_key=send_key)
    except ReplyError as exc:
        db().rollback()
        return _editor(app, final, date=date, error=str(exc), status=400, send_key=send_key)
    db().commit()
    flash(f"Reply queued for sending to {app.email}. The application is {app.status}.")
    return redirect(url_for("applications.show", application_id=app.id) + "#sent-h")


def _selected(code: str) -> tuple[list[Application], int]:
    """The chosen applications that are in this queue and can be written to, and how many
    chosen ids were left out (another group's, merged, anonymised or unknown: all alike)."""
    ids = {int(v) for v in request.form.getlist("ids") if v.isdigit()}
    if len(ids) > BULK_MAX:
        raise ReplyError(f"Choose at most {BULK_MAX} applications at a time.")
    apps = list(db().scalars(select(Application).where(
        Application.id.in_(ids), Application.group_code == code, Application.merged_into_id.is_(None),
        Application.email.is_not(None)).order_by(Application.id))) if ids else []
    apps = [a for a in apps if account().can_see(a.group_code)]
    return apps, len(ids) - len(apps)


def _bulk_request(code: str) -> tuple[list[Application], int, str, str, dt.datetime | None]:
    apps, left_out = _selected(code)
    if not apps:
        raise ReplyError("Tick at least one application in this queue.")
    template = _template(request.form.get("template", ""))
    date = request.form.get("date", "")
    return apps, left_out, template, date, _session_start(template, date)


def _to_queue(code: str, message: str) -> Response:
    db().rollback()
    flash(message, "error")
    return redirect(url_for("queues.show", code=code))


@bp.route("/queues/<code>/bulk", methods=["POST"])
def bulk_preview(code: str) -> Response | str:
    """The count and the first message as it will be sent; nothing is queued yet."""
    code = group_or_404(code)
    if code == TRIAGE:
        return _to_queue(code, "Move applications to a group before writing to them.")
    try:
        apps, left_out, template, date, start = _bulk_request(code)
        first = _composer().draft(db(), apps[0], template, coordinator_name=_coordinator_name(),
                                  now=state().clock.now(), session_start=start)
    except ReplyError as exc:
        return _to_queue(code, str(exc))
    audit("reply.bulk_preview", target_type="queue", target_id=code, group_code=code,
          details={"template": template, "count": len(apps)})
    db().commit()
    return render_template("bulk_preview.html", code=code, display=display_name(code), apps=apps, first=first,
                           send_key=new_send_key(),
                           left_out=left_out, template=template, label=LABELS[template], date=date,
                           sender=_sender(code))


@bp.route("/queues/<code>/bulk/send", methods=["POST"])
def bulk_send(code: str) -> Response:
    """One message per application, each its own thread, spaced out through the outbox."""
    code = group_or_404(code)
    if code == TRIAGE:
        return _to_queue(code, "Move applications to a group before writing to them.")
    send_key = request.form.get("send_key", "")
    try:
        if not valid_send_key(send_key):
            raise ReplyError("This form is out of date: choose the applications again.")
        apps, left_out, template, _date, start = _bulk_request(code)
        rows = send_bulk(_composer(), db(), apps, template, coordinator_name=_coordinator_name(),
                         actor=account().email, now=state().clock.now(), session_start=start, ip=client_ip(),
                         send_key=send_key)
    except ReplyError as exc:
        return _to_queue(code, str(exc))
    db().commit()
    if not rows:
        flash("These messages were already queued (the form was sent twice); each goes out once.")
        return redirect(url_for("queues.show", code=code))
    note = f" {left_out} chosen could not be written to and were left out." if left_out else ""
    flash(f"{len(rows)} message{'' if len(rows) == 1 else 's'} queued for sending, each to one applicant.{note}")
    return redirect(url_for("queues.show", code=code))
