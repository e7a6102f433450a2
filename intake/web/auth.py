"""Signing in and out, with the privacy notice on the login page."""

from __future__ import annotations

from flask import Blueprint, Response, redirect, render_template, request, session, url_for

from intake import users
from intake.db import transaction
from intake.audit import record
from intake.web.access import audit, client_ip, db
from intake.web.state import state

bp = Blueprint("auth", __name__)


def _privacy_notice() -> str:
    settings = state().settings
    try:
        return settings.resolve(settings["privacy.notice_file"]).read_text(encoding="utf-8")
    except OSError:
        return ""


def _safe_next(target: str | None) -> str:
    # Only same-site paths: "//evil.example" and "/\\evil" would leave the site.
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return url_for("dashboard.index")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str:
    error, status = "", 200
    email = ""
    if request.method == "POST":
        email = request.form.get("email", "").strip().lower()[:320]
        password = request.form.get("password", "")
        st, ip = state(), client_ip()
        now = st.clock.now()
        if st.limiter.blocked(email, ip, now):
            error, status = "Too many failed attempts. Wait 15 minutes and try again.", 429
            with transaction(st.sessions) as s:
                record(s, actor=email or "anonymous", action="login.blocked", ip=ip)
        else:
            with transaction(st.sessions) as s:
                acct = users.authenticate(s, email, password, now)
                record(s, actor=email or "anonymous", action="login" if acct else "login.failed", ip=ip,
                       target_type="user", target_id=email)
            if acct is not None:
                st.limiter.succeeded(email)
                session.clear()  # a fresh session (and CSRF token) on every sign-in
                session.permanent = True
                session["uid"] = acct.id
                return redirect(_safe_next(request.args.get("next")))
            st.limiter.failed(email, ip, now)
            error, status = "The email address or password is not right.", 401
    body = render_template("login.html", error=error, email=email, notice=_privacy_notice(),
                           next=request.args.get("next", ""))
    return Response(body, status=status)


@bp.route("/logout", methods=["POST"])
def logout() -> Response:
    audit("logout")
    db().commit()
    session.clear()
    return redirect(url_for("auth.login"))


@bp.app_context_processor
def _inject() -> dict:
    from flask import g

    return {"current": g.get("account"), "nav_groups": _nav()}


def _nav() -> list[tuple[str, str]]:
    from flask import g

    from intake.web.access import display_name, visible_codes

    if g.get("account") is None:
        return []
    return [(code, display_name(code)) for code in visible_codes()]

