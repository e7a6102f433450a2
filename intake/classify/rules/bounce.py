"""Delivery status notifications and other bounces."""

from __future__ import annotations

import re

from intake.domain import InboundMessage, Kind, Verdict

name = "bounce"
description = "a delivery failure report (DSN) or a message from a mailer daemon"

_DAEMONS = ("mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon")
# An empty Return-Path alone is not enough: RFC 3834 asks auto-replies to use one too, and
# an out-of-office read as a bounce would mark the application undeliverable.
_DSN_SUBJECT = re.compile(
    r"(undeliver|undelivered|delivery status notification|delivery (has )?failed|delivery failure|failure notice|"
    r"returned mail|mail delivery (failed|system)|could not be delivered|non remis|unzustellbar|nicht zustellbar)",
    re.IGNORECASE)


def check(msg: InboundMessage, ctx) -> Verdict | None:  # type: ignore[no-untyped-def]
    ctype = msg.header("Content-Type").lower()
    if "multipart/report" in ctype and "delivery-status" in ctype:
        return Verdict(Kind.BOUNCE, "multipart/report; report-type=delivery-status", rule=name)
    if msg.has_header("X-Failed-Recipients"):
        return Verdict(Kind.BOUNCE, f"X-Failed-Recipients: {msg.header('X-Failed-Recipients')[:80]}", rule=name)
    sender = msg.from_.email.split("@")[0] if msg.from_ else ""
    raw_from = msg.header("From").lower()
    if sender in _DAEMONS or (not msg.from_ and any(d in raw_from for d in _DAEMONS)):
        return Verdict(Kind.BOUNCE, f"from {sender or 'MAILER-DAEMON'}", rule=name)
    if msg.header("Return-Path").strip() == "<>" and _DSN_SUBJECT.search(msg.subject):
        return Verdict(Kind.BOUNCE, f"empty Return-Path and a delivery-failure subject {msg.subject[:60]!r}", rule=name)
    return None
