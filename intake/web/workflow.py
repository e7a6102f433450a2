"""The coordinators' status workflow as a table (pure).

    new -> contacted -> accepted | declined
    any open status  -> withdrawn | undeliverable
    a closed status  -> contacted   (reopen: mistakes happen, and people change their minds)
"""

from __future__ import annotations

from intake.domain import Status

TRANSITIONS: dict[Status, tuple[Status, ...]] = {
    Status.NEW: (Status.CONTACTED, Status.WITHDRAWN, Status.UNDELIVERABLE),
    Status.CONTACTED: (Status.ACCEPTED, Status.DECLINED, Status.WITHDRAWN, Status.UNDELIVERABLE),
    Status.ACCEPTED: (Status.CONTACTED, Status.WITHDRAWN),
    Status.DECLINED: (Status.CONTACTED,),
    Status.WITHDRAWN: (Status.CONTACTED,),
    Status.UNDELIVERABLE: (Status.CONTACTED,),
}

LABELS = {
    Status.NEW: "New",
    Status.CONTACTED: "Contacted",
    Status.ACCEPTED: "Accepted",
    Status.DECLINED: "Declined",
    Status.WITHDRAWN: "Withdrawn",
    Status.UNDELIVERABLE: "Undeliverable",
}


def next_statuses(current: str) -> tuple[Status, ...]:
    """Where an application in `current` may go next (empty for an unknown status)."""
    try:
        return TRANSITIONS[Status(current)]
    except ValueError:
        return ()


def allowed(current: str, target: str) -> bool:
    return any(s.value == target for s in next_statuses(current))
