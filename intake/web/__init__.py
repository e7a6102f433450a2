"""The coordinators' web app: `create_app(settings)` builds a Flask app from blueprints.

Pages are server-rendered Jinja2 (templates/web/); the app works without JavaScript.
Every request runs through security.py (login, CSRF, headers); every page that shows or
changes an application checks the signed-in account's groups (access.py) and is audited.
"""

from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path

from flask import Flask
from sqlalchemy.orm import Session, sessionmaker

from intake.clock import Clock, SystemClock
from intake.config import Settings
from intake.web.state import WebState

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "web"
STATIC = Path(__file__).resolve().parent / "static"


def create_app(settings: Settings, *, sessions: sessionmaker[Session] | None = None,
               clock: Clock | None = None) -> Flask:
    """A ready-to-serve app; `sessions` and `clock` are injected by tests and the CLI."""
    from intake.web import applications, audit_log, auth, dashboard, dates, errors, export, ops, queues, replies, security, subject_access

    if sessions is None:
        from intake.db import make_engine, make_sessionmaker

        sessions = make_sessionmaker(make_engine(settings["database.url"], busy_timeout=settings["database.busy_timeout"]))
    app = Flask(__name__, template_folder=str(TEMPLATES), static_folder=str(STATIC), static_url_path="/static")
    app.config.update(
        SECRET_KEY=_secret_key(settings),
        SESSION_COOKIE_NAME="intake_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings["web.secure_cookies"],
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=8),
        MAX_CONTENT_LENGTH=256 * 1024,  # forms only: nothing is uploaded
        SEND_FILE_MAX_AGE_DEFAULT=3600,
    )
    app.extensions["intake"] = WebState(settings=settings, sessions=sessions, clock=clock or SystemClock())
    security.init_app(app)
    errors.init_app(app)
    for module in (auth, dashboard, queues, applications, export, dates, audit_log, subject_access, ops, replies):
        app.register_blueprint(module.bp)
    return app


def _secret_key(settings: Settings) -> str:
    env_name = settings["web.secret_key_env"]
    if env_name and settings.env.get(env_name):
        return settings.env[env_name]
    # A random key per start signs everyone out at restart: safe, and fine for a demo.
    return settings["web.secret_key"] or secrets.token_hex(32)
