"""The applicant asks to be removed (in the subject or their own words, never in a quote)."""

from __future__ import annotations

import re

from intake.classify.text import body_text, own_words
from intake.domain import InboundMessage, Kind, Verdict

name = "withdrawal"
description = "the sender asks to withdraw or be removed"

# "no longer able to" alone is not here on purpose: "no longer able to attend the
# January date" is a follow-up, and marking it withdrawn would close the application.
_PHRASES = re.compile(
    r"\b(please remove me|remove me from|remove my (name|details)|take me off|"
    r"(wish|like|want|need) to withdraw|withdraw (my|me)|withdrawing (my|from)|please withdraw|"
    r"no longer (wish|want|interested)|not interested any ?more|"
    r"no longer able to (take part|participate|join|be involved|commit)|"
    r"unsubscribe me|opt me out|delete my (details|data|information)|cancel my (interest|application))\b",
    re.IGNORECASE)


def check(msg: InboundMessage, ctx) -> Verdict | None:  # type: ignore[no-untyped-def]
    for where, text in (("subject", msg.subject), ("body", own_words(body_text(msg)))):
        match = _PHRASES.search(text)
        if match:
            return Verdict(Kind.WITHDRAWAL, f"asks to withdraw ({where}: {match.group(0)!r})", rule=name)
    return None
