"""Subject access for admins: everything stored about one email address, as a zip download.

The same export as `intake subject export` (intake.subject.build_export), audited the same
way. Admin only: a coordinator gets 404, like any page outside their groups. Erasure stays a
command-line act (`intake subject erase`) because it cannot be undone.
"""

from __future__ import annotations

import re

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for

from intake.crypto import RawCipher
from intake.subject import build_export, export_zip_bytes
from intake.web.access import audit, db, require_admin
from intake.web.state import state

bp = Blueprint("subject", __name__)
_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+$")


@bp.route("/admin/subject-access")
def form() -> str:
    require_admin()
    return render_template("subject_access.html")


@bp.route("/admin/subject-access", methods=["POST"])
def export() -> Response:
    require_admin()
    email = request.form.get("email", "").strip()
    if not _ADDRESS.match(email):
        flash("Enter the person's email address, for example jane.smith@example.nhs.uk.", "error")
        return redirect(url_for("subject.form"))
    settings = state().settings
    session = db()
    data, files = build_export(session, email, RawCipher.from_settings(settings), now=state().clock.now())
    audit("subject.export", target_type="subject",
          details={"applications": [a["id"] for a in data["applications"]], "messages": len(data["messages"]),
                   "outbox": len(data["outbox"]), "quarantine": len(data["quarantine"]), "via": "web"})
    session.commit()
    filename = f"subject-export-{state().clock.now():%Y-%m-%d}.zip"
    return Response(export_zip_bytes(data, files), mimetype="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
