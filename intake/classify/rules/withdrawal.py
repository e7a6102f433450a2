"""The applicant asks to be removed."""

from __future__ import annotations

import re

from intake.domain import InboundMessage, Kind, Verdict

name = "withdrawal"
description = "the sender asks to withdraw or be removed"

_PHRASES = re.compile(
    r"\b(please remove me|remove me from|take me off|withdraw (my|me)|withdrawing (my|from)|"
    r"no longer (wish|want|interested|able to)|unsubscribe me|delete my (details|data|information)|"
    r"cancel my (interest|application))\b",
    re.IGNORECASE)


def own_words(body: str) -> str:
    """The sender's own text: quoted lines and everything after a reply header dropped."""
    kept = []
    for line in body.splitlines():
        stripped = line.strip()
        if stripped.startswith(">"):
            continue
        if re.match(r"^(on .* wrote:|-----original message-----|from: .*|-+ ?forwarded message ?-+)$", stripped, re.IGNORECASE):
            break
        kept.append(line)
    return "\n".join(kept)[:4000]


def check(msg: InboundMessage, ctx) -> Verdict | None:  # type: ignore[no-untyped-def]
    for where, text in (("subject", msg.subject), ("body", own_words(msg.text or msg.html))):
        match = _PHRASES.search(text)
        if match:
            return Verdict(Kind.WITHDRAWAL, f"asks to withdraw ({where}: {match.group(0)!r})", rule=name)
    return None
