"""A reply in a thread we know: to a message we stored or sent, or naming our reference."""

from __future__ import annotations

from intake.domain import InboundMessage, Kind, Verdict

name = "follow_up"
description = "a reply to something we stored or sent, or naming an application reference"


def check(msg: InboundMessage, ctx) -> Verdict | None:  # type: ignore[no-untyped-def]
    ids = list(dict.fromkeys(i.lower() for i in ([msg.in_reply_to] if msg.in_reply_to else []) + list(msg.references)))
    known = [i for i in ids if i in ctx.known_message_ids]
    if known:
        return Verdict(Kind.FOLLOW_UP, f"replies to {known[0]}", rule=name, related_message_ids=tuple(known))
    from intake.classify import find_references

    refs = [r for r in find_references(msg.subject) if r in ctx.known_references]
    if refs:
        return Verdict(Kind.FOLLOW_UP, f"names application {refs[0]} in the subject", rule=name)
    return None
