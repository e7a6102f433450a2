"""Mailing-list traffic."""

from __future__ import annotations

from intake.domain import InboundMessage, Kind, Verdict

name = "list"
description = "sent through a mailing list"


def check(msg: InboundMessage, ctx) -> Verdict | None:  # type: ignore[no-untyped-def]
    for header in ("List-Id", "List-Unsubscribe", "List-Post"):
        if msg.has_header(header):
            return Verdict(Kind.LIST, f"{header} header", rule=name)
    if msg.header("Precedence").strip().lower() == "list":
        return Verdict(Kind.LIST, "Precedence: list", rule=name)
    return None
