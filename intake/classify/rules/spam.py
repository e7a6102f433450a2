"""Mail the receiving server flagged as spam."""

from __future__ import annotations

from intake.domain import InboundMessage, Kind, Verdict

name = "spam"
description = "flagged as spam by the receiving server"


def check(msg: InboundMessage, ctx) -> Verdict | None:  # type: ignore[no-untyped-def]
    if msg.header("X-Spam-Flag").strip().upper().startswith("YES"):
        return Verdict(Kind.SPAM, "X-Spam-Flag: YES", rule=name)
    if msg.header("X-Spam-Status").strip().lower().startswith("yes"):
        return Verdict(Kind.SPAM, "X-Spam-Status: Yes", rule=name)
    if msg.header("X-MS-Exchange-Organization-SCL").strip() in ("5", "6", "7", "8", "9"):
        return Verdict(Kind.SPAM, "Exchange spam confidence level >= 5", rule=name)
    return None
