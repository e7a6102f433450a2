"""Request-wide protections: sign-in required, CSRF tokens, security headers.

Every request except the login page, static files and the two monitoring read-outs
(GET /healthz, GET /metrics: counts only, see ops.py) needs a signed-in, active account
(re-read from the database each request, so disabling a user takes effect at once).
Every POST must carry the session's CSRF token. Every response gets a strict CSP.
"""

from __future__ import annotations

import hmac
import secrets

from flask import Flask, Response, abort, g, redirect, request, session, url_for

from intake.web.access import close_db, db
from intake.users import load_account

PUBLIC_ENDPOINTS = frozenset({"auth.login", "static"})
# Monitoring scrapes without an account; these endpoints show no personal data (ops.py).
MONITORING_ENDPOINTS = frozenset({"ops.healthz", "ops.metrics"})
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# No inline script or style anywhere; images only from us (the chart is inline SVG markup).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; "
       "object-src 'none'; frame-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


def init_app(app: Flask) -> None:
    app.before_request(_check_csrf)
    app.before_request(_require_login)
    app.after_request(_headers)
    app.teardown_request(close_db)
    app.jinja_env.globals["csrf_token"] = csrf_token


def csrf_token() -> str:
    """The session's CSRF token (created on first use); forms post it as `csrf_token`."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def _check_csrf() -> None:
    if request.method not in UNSAFE_METHODS:
        return None
    expected = session.get("csrf")
    sent = request.form.get("csrf_token", "") or request.headers.get("X-CSRF-Token", "")
    if not expected or not hmac.compare_digest(str(expected), sent):
        abort(400, description="This form has expired or did not come from this site. Go back, reload the page and try again.")
    return None


def _require_login() -> Response | None:
    g.account = None
    if _monitoring():
        return None  # no account needed, and none loaded: the database may be the thing that is down
    uid = session.get("uid")
    if uid is not None:
        g.account = load_account(db(), uid)
        if g.account is None:
            session.clear()
    if g.account is None and request.endpoint not in PUBLIC_ENDPOINTS:
        if request.method in ("GET", "HEAD"):
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        abort(403)
    return None


def _monitoring() -> bool:
    return request.endpoint in MONITORING_ENDPOINTS and request.method in ("GET", "HEAD")


def _headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint != "static":
        # Pages carry personal data: never keep them in a shared or back-button cache.
        response.headers["Cache-Control"] = "no-store"
    return response
