"""Demo sign-ins for `make run`: one admin and one coordinator per group, printed at start."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from intake.config import Settings
from intake.db import transaction
from intake.users import add_user, find

DEMO_PASSWORD = "demo-password"


def ensure_demo_accounts(sessions: sessionmaker[Session], settings: Settings) -> list[str]:
    """Create the demo accounts when missing; return one printable line per account."""
    codes = [g.code for g in settings.groups]
    wanted = [("admin@example.org", "admin", [])] + [(f"{c.lower()}.coordinator@example.org", "coordinator", [c])
                                                       for c in codes]
    lines = []
    with transaction(sessions) as session:
        for email, role, groups in wanted:
            if find(session, email) is None:
                add_user(session, email, DEMO_PASSWORD, role=role, groups=groups, known_groups=codes)
            lines.append(f"{email} / {DEMO_PASSWORD} ({role}{': ' + ', '.join(groups) if groups else ', all groups'})")
    return lines
