"""Automatic answers (RFC 3834 and the vendors' own markers), out-of-office, read receipts."""

from __future__ import annotations

import re

from intake.domain import InboundMessage, Kind, Verdict

name = "auto_reply"
description = "an automatic answer: out of office, autoresponder, read receipt"

_SUBJECTS = re.compile(
    r"^\s*(automatic reply|auto[- ]?reply|autoreply|auto:|out of (the )?office|abwesenheitsnotiz|"
    r"r[ée]ponse automatique|absence|read:|gelesen:|lu :|delivered:|on leave|away from the office)",
    re.IGNORECASE)


def check(msg: InboundMessage, ctx) -> Verdict | None:  # type: ignore[no-untyped-def]
    auto = msg.header("Auto-Submitted").strip().lower()
    if auto and auto != "no":
        return Verdict(Kind.AUTO_REPLY, f"Auto-Submitted: {auto}", rule=name)
    for header in ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Auto-Reply"):
        if msg.has_header(header):
            return Verdict(Kind.AUTO_REPLY, f"{header} header", rule=name)
    precedence = msg.header("Precedence").strip().lower()
    if precedence in ("bulk", "junk", "auto_reply"):
        return Verdict(Kind.AUTO_REPLY, f"Precedence: {precedence}", rule=name)
    suppress = msg.header("X-Auto-Response-Suppress").lower()
    if any(v in suppress for v in ("oof", "autoreply", "all")):
        return Verdict(Kind.AUTO_REPLY, f"X-Auto-Response-Suppress: {msg.header('X-Auto-Response-Suppress')}", rule=name)
    ctype = msg.header("Content-Type").lower()
    if "disposition-notification" in ctype:
        return Verdict(Kind.AUTO_REPLY, "a read receipt (disposition-notification report)", rule=name)
    if _SUBJECTS.match(msg.subject):
        return Verdict(Kind.AUTO_REPLY, f"automatic-reply subject {msg.subject[:60]!r}", rule=name)
    return None
