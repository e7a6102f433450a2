"""Automatic answers (RFC 3834 and the vendors' own markers), out-of-office, read receipts."""

from __future__ import annotations

import re

from intake.domain import InboundMessage, Kind, Verdict

name = "auto_reply"
description = "an automatic answer: out of office, autoresponder, read receipt"

_SUBJECTS = re.compile(
    r"^\s*(automatic reply|auto[- ]?reply|autoreply|auto:|auto-response|out of (the )?office|abwesenheitsnotiz|"
    r"automatische antwort|r[ée]ponse automatique|respuesta autom[áa]tica|read:|gelesen:|lu\s*:|"
    r"delivered:|not read:|on annual leave|away from the office)",
    re.IGNORECASE)
_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Auto-Reply")
_SUPPRESS = {"oof", "autoreply", "all"}


def check(msg: InboundMessage, ctx) -> Verdict | None:  # type: ignore[no-untyped-def]
    auto = msg.header("Auto-Submitted").strip().lower()
    if auto and not auto.startswith("no"):
        return Verdict(Kind.AUTO_REPLY, f"Auto-Submitted: {auto}", rule=name)
    for header in _HEADERS:
        if msg.has_header(header):
            return Verdict(Kind.AUTO_REPLY, f"{header}: {msg.header(header)[:40]}", rule=name)
    precedence = msg.header("Precedence").strip().lower()
    if precedence in ("bulk", "junk", "auto_reply"):
        return Verdict(Kind.AUTO_REPLY, f"Precedence: {precedence}", rule=name)
    suppress = msg.header("X-Auto-Response-Suppress")
    if _SUPPRESS & {t.strip().lower() for t in suppress.split(",")}:
        return Verdict(Kind.AUTO_REPLY, f"X-Auto-Response-Suppress: {suppress[:60]}", rule=name)
    if "disposition-notification" in msg.header("Content-Type").lower():
        return Verdict(Kind.AUTO_REPLY, "a read receipt (disposition-notification report)", rule=name)
    if _SUBJECTS.match(msg.subject):
        return Verdict(Kind.AUTO_REPLY, f"automatic-reply subject {msg.subject[:60]!r}", rule=name)
    return None
