"""Operational read-outs for monitoring: a health summary and Prometheus metrics (pure text)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from intake.clock import utc
from intake.config import Settings
from intake.models import MailboxState, Message, Outbox, Quarantine


def health(session: Session, settings: Settings, now: dt.datetime) -> tuple[bool, dict[str, Any]]:
    """Database reachable and, per mailbox, the age of the last successful poll.

    Unhealthy when the database fails or a mailbox has not been polled successfully for
    three poll intervals (plus a minute of grace).
    """
    session.execute(text("SELECT 1"))
    states = {s.name: s for s in session.execute(select(MailboxState)).scalars()}
    limit = 3 * settings["worker.poll_interval"] + 60
    boxes: dict[str, Any] = {}
    ok = True
    for mailbox in settings.mailboxes:
        if not mailbox.enabled:
            continue
        state = states.get(mailbox.name)
        age = (now - utc(state.last_success_at)).total_seconds() if state and state.last_success_at else None
        healthy = age is not None and age <= limit
        ok = ok and healthy
        boxes[mailbox.name] = {"last_success_age_seconds": None if age is None else round(age, 1),
                               "last_error": state.last_error if state else None, "ok": healthy}
    return ok, {"database": "ok", "mailboxes": boxes}


def metrics_text(session: Session) -> str:
    """Prometheus exposition format. Counts come from the database, so every worker agrees."""
    lines: list[str] = []

    def family(name: str, kind: str, help_: str, samples: list[tuple[dict[str, str], float]]) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            label = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            lines.append(f"{name}{{{label}}} {value}" if label else f"{name} {value}")

    kinds = session.execute(select(Message.kind, func.count()).group_by(Message.kind)).all()
    family("intake_messages_total", "counter", "Messages stored, by kind.", [({"kind": k}, n) for k, n in kinds])
    statuses = session.execute(select(Outbox.kind, Outbox.status, func.count()).group_by(Outbox.kind, Outbox.status)).all()
    family("intake_outbox_messages", "gauge", "Outgoing messages by kind and status.",
           [({"kind": k, "status": s}, n) for k, s, n in statuses])
    states = list(session.execute(select(MailboxState)).scalars())
    family("intake_polls_total", "counter", "Polls per mailbox.", [({"mailbox": s.name}, s.polls_total or 0) for s in states])
    family("intake_poll_errors_total", "counter", "Failed polls per mailbox.",
           [({"mailbox": s.name}, s.poll_errors_total or 0) for s in states])
    family("intake_poll_duration_seconds", "gauge", "Duration of the last poll per mailbox.",
           [({"mailbox": s.name}, round(s.last_poll_seconds or 0.0, 3)) for s in states])
    family("intake_mailbox_backlog", "gauge", "Messages left to fetch at the end of the last poll.",
           [({"mailbox": s.name}, s.backlog or 0) for s in states])
    family("intake_last_success_timestamp_seconds", "gauge", "Unix time of the last successful poll.",
           [({"mailbox": s.name}, utc(s.last_success_at).timestamp()) for s in states if s.last_success_at])
    quarantined = session.execute(select(func.count()).select_from(Quarantine).where(Quarantine.resolved_at.is_(None))).scalar_one()
    family("intake_quarantined_messages", "gauge", "Unresolved quarantined messages.", [({}, quarantined)])
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
