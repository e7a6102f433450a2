"""Routing: which group queue(s) a message belongs in. Pure and fast.

Evidence, strongest first:
1. recipients (To, Cc, Delivered-To, X-Original-To) matching a group's addresses, including
   plus-addresses (blfi+swig@...): the applicant chose the address;
2. the mailbox's default group;
3. the message naming groups in the subject or the sender's own words: codes, display
   names and full names ("SLGBT+IG", the misprint "SLGBY+IG", "Senior Women Influencers
   Group") are strong; keywords ("women", "disabled", "BAME", "LGBTQ+") are weak.
Recipient or mailbox evidence decides alone, except that a message which also names other
groups strongly goes to each group it names as well (someone writing to SWIG "and also
SDIG"). With no recipient or mailbox evidence, strong names decide; keywords alone decide
only when they all point to one group; anything else goes to TRIAGE with the reason.

Only the sender's own words are read (intake.classify.text.own_words): quoted replies,
forwarded/original-message blocks and the signature under a sign-off are cut, so a trust
called "Black Country ..." or a quoted newsletter naming SWIG is not evidence. A plus tag
counts when, letters only, it equals a group code ("blfi+slgbt+ig" -> SLGBTIG).
"""

from __future__ import annotations

import functools
import re
from typing import Sequence

from intake.addresses import plus_tag
from intake.classify.text import body_text, own_words
from intake.domain import TRIAGE, InboundMessage, Route
from intake.groups import Group

# Variants people write for each code, beyond the configured code, display and name.
ALIASES: dict[str, tuple[str, ...]] = {
    "SWIG": ("senior women influencers", "women influencers group", "women's influencers group"),
    "SDIG": ("senior disability influencers", "disability influencers group"),
    "SBAMEIG": ("senior bame influencers", "bame influencers group", "s-bame-ig"),
    "SLGBTIG": ("slgbt+ig", "slgbtig", "slgby+ig", "slgbyig", "slgbtq+ig", "slgbtqig", "senior lgbt+ influencers",
                "senior lgbt influencers", "lgbt+ influencers group", "lgbtq+ influencers group"),
}


class Router:
    """Compiled patterns for one set of groups (built once, reused for every message)."""

    def __init__(self, groups: tuple[Group, ...]):
        self.groups = groups
        self.addresses = {a: g.code for g in groups for a in g.addresses}
        self.strong = {g.code: _pattern({g.code.lower(), g.display.lower(), g.name.lower(), *ALIASES.get(g.code, ())})
                       for g in groups}
        self.weak = {g.code: _pattern(set(g.keywords)) for g in groups if g.keywords}

    def route(self, msg: InboundMessage, mailbox_group: str = "") -> Route:
        by_address = self._by_address(msg)
        text = f"{msg.subject}\n{own_words(body_text(msg), signature=False)}"
        strong = [code for code, pat in self.strong.items() if pat.search(text)]
        if by_address:
            codes = _ordered(by_address + strong, self.groups)
            extra = f"; also names {', '.join(c for c in strong if c not in by_address)}" if set(strong) - set(by_address) else ""
            return Route(codes, f"sent to {', '.join(by_address)} address{extra}", tuple(f"address:{c}" for c in by_address))
        if mailbox_group:
            codes = _ordered([mailbox_group] + strong, self.groups)
            extra = f"; also names {', '.join(c for c in strong if c != mailbox_group)}" if set(strong) - {mailbox_group} else ""
            return Route(codes, f"arrived in the {mailbox_group} mailbox{extra}", (f"mailbox:{mailbox_group}",))
        if strong:
            return Route(_ordered(strong, self.groups), f"names {', '.join(strong)}", tuple(f"named:{c}" for c in strong))
        weak = {code: pat.findall(text) for code, pat in self.weak.items()}
        weak = {code: hits for code, hits in weak.items() if hits}
        if len(weak) == 1:
            code, hits = next(iter(weak.items()))
            words = ", ".join(sorted({h.lower() for h in hits}))
            return Route((code,), f"keywords point to {code} only ({words})", (f"keyword:{code}",))
        if weak:
            detail = "; ".join(f"{c}: {', '.join(sorted({h.lower() for h in hits}))}" for c, hits in weak.items())
            return Route((TRIAGE,), f"conflicting keywords ({detail})", tuple(f"keyword:{c}" for c in weak))
        return Route((TRIAGE,), "no group named and no group address", ())

    def _by_address(self, msg: InboundMessage) -> list[str]:
        found: list[str] = []
        codes = {g.code.lower(): g.code for g in self.groups}
        # msg.recipients' order, without its quadratic de-duplication (10,000-address To: lines exist)
        for email in dict.fromkeys([a.email for a in msg.to + msg.cc] + list(msg.delivered_to)):
            # An exact group address, else a plus-address whose tag is a group code.
            code = self.addresses.get(email) or codes.get(re.sub(r"[^a-z]", "", plus_tag(email)))
            if code and code not in found:
                found.append(code)
        return found


def route(msg: InboundMessage, groups: Sequence[Group], *, mailbox_group: str = "") -> Route:
    return _router(tuple(groups)).route(msg, mailbox_group)


@functools.lru_cache(maxsize=8)
def _router(groups: tuple[Group, ...]) -> Router:
    return Router(groups)


def _pattern(words: set[str]) -> re.Pattern[str]:
    # Word boundaries that also work for terms ending in '+' ("lgbtq+").
    alternatives = sorted((re.escape(w) for w in words if w), key=len, reverse=True)
    return re.compile(r"(?<![\w+])(" + "|".join(alternatives) + r")(?![\w])", re.IGNORECASE)


def _ordered(codes: list[str], groups: tuple[Group, ...]) -> tuple[str, ...]:
    order = [g.code for g in groups]
    unique = list(dict.fromkeys(codes))
    return tuple(sorted(unique, key=lambda c: order.index(c) if c in order else len(order)))
