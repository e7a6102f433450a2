"""Classification: what is this message? A pure function of the message and a context.

The ordered RULES table below is the policy: read it top to bottom. The first rule that
returns a Verdict decides; a message no rule claims is an expression of interest. Each rule
is a small module in `rules/` with a `name`, a one-line `description` and
`check(msg, ctx) -> Verdict | None`. Rules that read the body read only the sender's own
words (intake.classify.text: quotes, forwarded blocks and signatures cut). `unparseable`
is never decided here: the pipeline uses it when parsing raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import ModuleType

from intake.domain import InboundMessage, Kind, Verdict

REFERENCE_PATTERN = re.compile(r"\bBLFI-\d{6,}\b", re.IGNORECASE)


def find_references(text: str) -> tuple[str, ...]:
    """Our application references in a text, upper-cased, in order, without repeats."""
    return tuple(dict.fromkeys(m.upper() for m in REFERENCE_PATTERN.findall(text or "")))


@dataclass(frozen=True)
class ClassifyContext:
    own_addresses: frozenset[str]
    message_id_domain: str
    loop_header: str = "X-Intake-Loop"
    known_message_ids: frozenset[str] = frozenset()
    known_references: frozenset[str] = frozenset()
    sender_has_application: bool = False


from intake.classify.rules import (  # noqa: E402  (the table needs the context type above)
    auto_reply,
    bounce,
    follow_up,
    mailing_list,
    own_mail,
    spam,
    withdrawal,
)

RULES: tuple[ModuleType, ...] = (
    own_mail,      # our own replies and notifications coming back: never answer
    bounce,        # delivery failures (DSNs, MAILER-DAEMON, empty Return-Path)
    auto_reply,    # out-of-office and other automatic answers, read receipts
    mailing_list,  # list traffic
    spam,          # flagged by the receiving server
    withdrawal,    # "please remove me"
    follow_up,     # a reply in a thread we know
)


def classify(msg: InboundMessage, ctx: ClassifyContext) -> Verdict:
    for rule in RULES:
        verdict = rule.check(msg, ctx)
        if verdict is not None:
            return verdict
    return Verdict(Kind.INTEREST, "a person writing to a group address", rule="default")
