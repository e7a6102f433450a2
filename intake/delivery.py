"""PLACEHOLDER until delivery lands."""
from dataclasses import dataclass


@dataclass(frozen=True)
class DeliveryReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    held: int = 0


def deliver_due(sessions, settings, clock, *, worker_id="local", limit=500):
    return DeliveryReport()
