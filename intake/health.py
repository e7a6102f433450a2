"""`intake check`: is each part reachable and working? Prints one line per part."""

from __future__ import annotations

import datetime as dt
from typing import Callable

from sqlalchemy import func, select

from intake.clock import utc


def run_checks(app, echo: Callable[[str], None]) -> bool:  # type: ignore[no-untyped-def]
    """Config (already loaded by now), database, every mailbox, SMTP, then OAuth 2.0
    credential warnings (secret expiry, failed refreshes). True when all pass; warnings
    are printed but do not fail the check."""
    from intake.imap import check_mailbox
    from intake.models import MailboxState, Outbox
    from intake.oauth import settings_warnings
    from intake.smtp import check_smtp

    settings = app.settings
    ok = True
    echo(f"config    OK    {settings.path} ({len(settings.mailboxes)} mailboxes, {len(settings.groups)} groups)")
    try:
        with app.sessions() as session:
            states = {s.name: s for s in session.execute(select(MailboxState)).scalars()}
            counts = dict(session.execute(select(Outbox.status, func.count()).group_by(Outbox.status)).all())
        echo(f"database  OK    {settings['database.url']} (outbox pending {counts.get('pending', 0)}, "
             f"failed {counts.get('failed', 0)}, held {counts.get('held', 0)})")
        if counts.get("failed", 0) or counts.get("held", 0):
            echo("          WARN  some acknowledgements failed or are held: see `intake outbox list`")
    except Exception as exc:  # any database failure is reported, not raised: this is a health check
        echo(f"database  FAIL  {type(exc).__name__}: {exc}")
        return False
    now = app.clock.now()
    for mailbox in settings.mailboxes:
        if not mailbox.enabled:
            echo(f"mailbox   SKIP  {mailbox.name} (disabled)")
            continue
        health = check_mailbox(mailbox, base_dir=settings.base_dir)
        state = states.get(mailbox.name)
        last = _ago(now, state.last_success_at) if state and state.last_success_at else "never"
        backlog = state.backlog if state else 0
        if health.ok:
            echo(f"mailbox   OK    {mailbox.name}: {health.detail}; last successful poll {last}; backlog {backlog}")
        else:
            ok = False
            echo(f"mailbox   FAIL  {mailbox.name}: {health.detail}; last successful poll {last}")
        if state and state.consecutive_failures:
            echo(f"          WARN  {mailbox.name}: {state.consecutive_failures} failed polls in a row; last error: {state.last_error}")
    smtp_ok, detail = check_smtp(settings)
    echo(f"smtp      {'OK  ' if smtp_ok else 'FAIL'}  {detail}")
    # After the sign-ins above, so a refresh that just failed (or recovered) is reflected.
    for warning in settings_warnings(settings, now):
        echo(f"oauth     WARN  {warning}")
    return ok and smtp_ok


def _ago(now: dt.datetime, then: dt.datetime) -> str:
    seconds = int((now - utc(then)).total_seconds())
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"
