"""PLACEHOLDER until the acknowledgement module lands (owned by the ack work)."""
from __future__ import annotations
LOOP_HEADER = "X-Intake-Loop"


class Acknowledger:
    def __init__(self, settings, clock, templates_dir=None):
        self.settings, self.clock = settings, clock

    def enqueue(self, session, **kw):
        return None

    def record_bounce(self, session, inbound):
        return []


def seed_dates(session, groups):
    return 0
