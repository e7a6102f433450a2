"""When to acknowledge: a pure decision from facts the caller gathers.

Only interest and withdrawals are answered; never automated mail, follow-ups, our own or
robot addresses; at most one acknowledgement per recipient per group per window; a global
hourly cap beyond which replies are held for an administrator; and nothing for old mail
found when a mailbox is first connected (a backlog), so a new installation does not answer
last month's email.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from intake.addresses import is_valid_email
from intake.domain import Kind

ROBOT = re.compile(r"^(no-?reply|do-?not-?reply|mailer-daemon|postmaster|bounces?|root|abuse)([+.\-_].*)?@", re.IGNORECASE)


@dataclass(frozen=True)
class AckFacts:
    kind: Kind
    recipient: str                 # Reply-To or From, cleaned; '' when none
    own_addresses: frozenset[str]
    enabled: bool                  # ack.enabled
    mailbox_enabled: bool          # the mailbox's `ack`
    received_at: dt.datetime
    first_connected_at: dt.datetime | None
    max_age_hours: int
    groups_already_acked: frozenset[str]   # groups this recipient got an ack for within the window
    groups: frozenset[str]                 # groups of this message's applications
    sent_last_hour: int
    max_per_hour: int
    withdrawal_confirmed_recently: bool = False


@dataclass(frozen=True)
class AckDecision:
    send: bool
    hold: bool = False
    reason: str = ""
    groups: frozenset[str] = frozenset()


def decide(f: AckFacts) -> AckDecision:
    if f.kind not in (Kind.INTEREST, Kind.WITHDRAWAL):
        return AckDecision(False, reason=f"no acknowledgement for {f.kind.value}")
    if not f.enabled:
        return AckDecision(False, reason="acknowledgements are switched off (ack.enabled)")
    if not f.mailbox_enabled:
        return AckDecision(False, reason="acknowledgements are switched off for this mailbox")
    if not f.recipient or not is_valid_email(f.recipient):
        return AckDecision(False, reason="no valid address to reply to")
    if f.recipient.lower() in f.own_addresses:
        return AckDecision(False, reason="the reply address is one of our own")
    if ROBOT.match(f.recipient):
        return AckDecision(False, reason=f"{f.recipient} is an automated address")
    if f.first_connected_at is not None and f.received_at < f.first_connected_at - dt.timedelta(hours=f.max_age_hours):
        return AckDecision(False, reason=f"backlog: older than {f.max_age_hours} hours when the mailbox was connected")
    groups = f.groups - f.groups_already_acked if f.kind is Kind.INTEREST else f.groups
    if f.kind is Kind.INTEREST and f.groups and not groups:
        return AckDecision(False, reason=f"already acknowledged within the window for {', '.join(sorted(f.groups))}")
    if f.kind is Kind.WITHDRAWAL and f.withdrawal_confirmed_recently:
        return AckDecision(False, reason="withdrawal already confirmed within the window")
    if f.sent_last_hour >= f.max_per_hour:
        return AckDecision(True, hold=True, reason=f"over the hourly cap of {f.max_per_hour}: held", groups=groups or f.groups)
    return AckDecision(True, reason="acknowledge", groups=groups or f.groups)
