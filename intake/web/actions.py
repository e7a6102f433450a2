"""The changes a coordinator makes to an application: status, fields, move, merge.

Each function changes rows in the caller's session and returns what the audit event
should say; the blueprint checks access first and commits the change with its audit event.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from intake.errors import IntakeError
from intake.models import Application, Outbox, OutboxApplication
from intake.web.workflow import allowed

EDITABLE = ("name", "job_title", "organisation", "notes")
LIMITS = {"name": 300, "job_title": 300, "organisation": 300, "notes": 20000}


class ActionRefused(IntakeError):
    """The requested change is not allowed (shown to the coordinator as the reason)."""


def change_status(app: Application, target: str, now: dt.datetime) -> dict[str, Any]:
    if not allowed(app.status, target):
        raise ActionRefused(f"An application that is {app.status} cannot become {target}.")
    before = app.status
    app.status, app.status_changed_at, app.needs_attention = target, now, False
    return {"from": before, "to": target}


def edit_fields(app: Application, form: dict[str, str]) -> dict[str, Any]:
    changed = []
    for name in EDITABLE:
        if name in form:
            value = form[name].strip() if name != "notes" else form[name].replace("\r\n", "\n")
            value = value[:LIMITS[name]]
            if getattr(app, name) != value:
                setattr(app, name, value)
                changed.append(name)
    return {"fields": changed}  # names only: the audit trail never copies personal data


def move(session: Session, app: Application, target: str, reason: str, actor: str) -> tuple[Application, dict[str, Any]]:
    """Move to another queue; when the person already has an application there, merge into it."""
    if target == app.group_code:
        raise ActionRefused("The application is already in that queue.")
    if not reason.strip():
        raise ActionRefused("Say why it is being moved.")
    source = app.group_code
    existing = None
    if app.email:
        existing = session.scalar(select(Application).where(Application.email == app.email,
                                                            Application.group_code == target))
    note = f"Moved from {source} to {target} by {actor}: {reason.strip()[:500]}"
    if existing is not None and existing.id != app.id:
        merge(session, keep=existing, duplicate=app)
        existing.route_reason = note
        return existing, {"from": source, "to": target, "merged_into": existing.id}
    app.group_code, app.route_reason = target, note
    return app, {"from": source, "to": target}


def merge(session: Session, *, keep: Application, duplicate: Application) -> dict[str, Any]:
    """Fold `duplicate` into `keep`: its messages, acknowledgements and notes move across."""
    if keep.id == duplicate.id:
        raise ActionRefused("An application cannot be merged with itself.")
    if duplicate.merged_into_id is not None or keep.merged_into_id is not None:
        raise ActionRefused("That application has already been merged.")
    for message in list(duplicate.messages):
        if message not in keep.messages:
            keep.messages.append(message)
    linked = session.scalars(select(Outbox).join(OutboxApplication).where(OutboxApplication.application_id == duplicate.id))
    for row in linked:
        if keep not in row.applications:
            row.applications.append(keep)
    for name in ("name", "job_title", "organisation"):
        if not getattr(keep, name) and getattr(duplicate, name):
            setattr(keep, name, getattr(duplicate, name))
    if duplicate.notes:
        keep.notes = (keep.notes + "\n\n" if keep.notes else "") + f"[from {duplicate.reference}] {duplicate.notes}"
    keep.received_at = min(keep.received_at, duplicate.received_at)
    duplicate.merged_into_id = keep.id
    return {"kept": keep.id, "merged": duplicate.id}
