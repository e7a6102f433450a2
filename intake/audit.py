"""The audit trail: who did what to which record (never message content)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from intake.models import AuditEvent


def record(session: Session, *, actor: str, action: str, target_type: str = "", target_id: Any = "",
           group_code: str = "", ip: str = "", details: dict[str, Any] | None = None) -> AuditEvent:
    """Add an audit event to the current transaction (it commits with the change it records)."""
    event = AuditEvent(actor=actor, action=action, target_type=target_type, target_id=str(target_id),
                       group_code=group_code, ip=ip, details=details or {})
    session.add(event)
    return event
