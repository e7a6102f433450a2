"""Who may see what: the request's database session, the signed-in account, group checks.

The rule everywhere: a record of a group the account may not see answers 404 (as if it
did not exist), never 403, so URLs reveal nothing about other groups' data.
"""

from __future__ import annotations

from typing import Any

from flask import abort, g, request
from sqlalchemy.orm import Session

from intake.audit import record
from intake.domain import TRIAGE
from intake.models import Application
from intake.users import Account
from intake.web.state import state


def db() -> Session:
    """One database session per request, closed at teardown."""
    if "db" not in g:
        g.db = state().sessions()
    return g.db


def close_db(_exc: BaseException | None = None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()


def account() -> Account:
    acct = g.get("account")
    if acct is None:
        abort(404)
    return acct


def all_codes() -> tuple[str, ...]:
    return tuple(gr.code for gr in state().settings.groups)


def visible_codes() -> tuple[str, ...]:
    """Queues the account may open, in display order."""
    return account().visible_groups(all_codes())


def group_or_404(code: str) -> str:
    code = code.upper()
    if code not in all_codes() + (TRIAGE,) or not account().can_see(code):
        abort(404)
    return code


def require_admin() -> Account:
    acct = account()
    if not acct.is_admin:
        abort(404)
    return acct


def application_or_404(application_id: int) -> Application:
    app = db().get(Application, application_id)
    if app is None or not account().can_see(app.group_code):
        abort(404)
    return app


def display_name(code: str) -> str:
    if code == TRIAGE:
        return "Triage"
    try:
        return state().settings.group(code).display
    except KeyError:
        return code


def client_ip() -> str:
    # Behind a proxy, waitress's trusted_proxy settings rewrite remote_addr; never trust
    # X-Forwarded-For here, or a client could choose its own rate-limit key.
    return request.remote_addr or ""


def audit(action: str, *, actor: str | None = None, **fields: Any) -> None:
    """Record an audit event in the request's transaction (commit with the change)."""
    record(db(), actor=actor or account().email, action=action, ip=client_ip(), **fields)
