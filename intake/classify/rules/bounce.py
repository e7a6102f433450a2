"""Delivery status notifications and other bounces."""

from __future__ import annotations

from intake.domain import InboundMessage, Kind, Verdict

name = "bounce"
description = "a delivery failure report (DSN) or a message from a mailer daemon"

_DAEMONS = ("mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon")


def check(msg: InboundMessage, ctx) -> Verdict | None:  # type: ignore[no-untyped-def]
    ctype = msg.header("Content-Type").lower()
    if "multipart/report" in ctype and "delivery-status" in ctype:
        return Verdict(Kind.BOUNCE, "multipart/report; report-type=delivery-status", rule=name)
    if msg.has_header("X-Failed-Recipients"):
        return Verdict(Kind.BOUNCE, "X-Failed-Recipients header", rule=name)
    sender = msg.from_.email.split("@")[0] if msg.from_ else ""
    if sender in _DAEMONS or (not msg.from_ and "mailer-daemon" in msg.header("From").lower()):
        return Verdict(Kind.BOUNCE, f"from {sender or 'MAILER-DAEMON'}", rule=name)
    if msg.header("Return-Path").strip() == "<>" and "delivery" in msg.subject.lower():
        return Verdict(Kind.BOUNCE, "empty Return-Path and a delivery subject", rule=name)
    return None
