"""Mail from our own addresses, or carrying our loop header, is ours coming back."""

from __future__ import annotations

from intake.domain import InboundMessage, Kind, Verdict

name = "own_mail"
description = "sent by intake itself or from one of our own addresses"


def check(msg: InboundMessage, ctx) -> Verdict | None:  # type: ignore[no-untyped-def]
    if msg.has_header(ctx.loop_header):
        return Verdict(Kind.OWN_MAIL, f"carries our {ctx.loop_header} header", rule=name)
    if msg.from_ and msg.from_.email in ctx.own_addresses:
        return Verdict(Kind.OWN_MAIL, f"from our own address {msg.from_.email}", rule=name)
    return None
