"""Who an application is about: the sender, or the person in a forwarded message. Pure.

Email: Reply-To when valid, else From. Name: the display name, else the line under a
sign-off. Job title and organisation: the lines under the name in the signature
("Kind regards,\\nJane Smith\\nDirector of Nursing\\nLeeds Teaching Hospitals NHS Trust").

Forwards. A forwarded block is recognised by Gmail's "---------- Forwarded message
---------", Apple's "Begin forwarded message:", or, only when the subject says FW:/Fwd:,
Outlook's "-----Original Message-----" or "From: ... Sent: ..." header block (the same
block under a plain reply is just a quote). For a forward the applicant is, by default,
the person in the forwarded block (a PA forwarding for a director), with the signature
from that block. The one exception we detect: the forwarder's own words say *they* want to
join ("I would like to join", "please add me") and do not say they write for someone
else ("on behalf of", "for my director", "see below from") - then the forwarder is the
applicant (someone forwarding the invitation they received).
"""

from __future__ import annotations

import re

from intake.addresses import clean_header, parse_address
from intake.classify.text import SIGN_OFF, body_text, own_words
from intake.domain import Address, Applicant, InboundMessage

_EXPLICIT_FORWARD = re.compile(r"^\s*(-{2,}\s*forwarded message\s*-{2,}|begin forwarded message:)\s*$",
                               re.IGNORECASE | re.MULTILINE)
_OUTLOOK_BLOCK = re.compile(r"^\s*(-{2,}\s*original message\s*-{2,}\s*$|\*?from:\*?\s.+\n(.*\n){0,2}\s*\*?(sent|date):)",
                            re.IGNORECASE | re.MULTILINE)
_FORWARD_SUBJECT = re.compile(r"^\s*((re|aw|sv):\s*)*(fw|fwd|wg|tr)\s*:", re.IGNORECASE)
_FROM_LINE = re.compile(r"^\s*\*?from:\*?\s*(.+)$", re.IGNORECASE | re.MULTILINE)
_ON_BEHALF = re.compile(r"\b(on behalf of|for my (director|manager|boss|chief|ceo|executive|colleague)|"
                        r"see (below|attached) from|below from|(she|he|they) would like|forwarding (this )?for)\b",
                        re.IGNORECASE)
_SELF_INTEREST = re.compile(r"\b(i would like to|i'd like to|i am interested|i'm interested|please add me|"
                            r"i wish to|count me in|sign me up|i want to join)\b", re.IGNORECASE)
_ORG_HINT = re.compile(r"\b(nhs|trust|foundation|board|council|hospitals?|university|icb|integrated care|"
                       r"department|ltd|limited|college|service|england|scotland|wales|ireland|practice)\b", re.IGNORECASE)
_TITLE_HINT = re.compile(r"\b(director|chief|head|manager|officer|lead|consultant|nurse|doctor|chair|deputy|"
                         r"associate|executive|assistant|matron|midwife|professor|registrar|partner|secretary)\b",
                         re.IGNORECASE)


def extract_applicant(msg: InboundMessage) -> Applicant | None:
    """The applicant, or None when neither Reply-To, From nor a forwarded block has a valid address."""
    text = body_text(msg)
    sender = msg.reply_to or msg.from_
    forward = _forward_start(text, msg.subject)
    if forward is not None:
        forwarded = _forwarded_sender(text, forward)
        mine = text[:forward]
        wants_self = _SELF_INTEREST.search(mine) and not _ON_BEHALF.search(mine)
        if forwarded is not None and not wants_self and (sender is None or forwarded.email != sender.email):
            name, title, org = _signature(_forwarded_body(text, forward))
            return Applicant(email=forwarded.email, name=_tidy_name(forwarded.name) or name, job_title=title, organisation=org)
        text = mine
    if sender is None:
        return None
    name, title, org = _signature(text)
    return Applicant(email=sender.email, name=_display_name(msg, sender) or name, job_title=title, organisation=org)


def _forward_start(text: str, subject: str) -> int | None:
    """Where a forwarded block starts in the body, or None."""
    explicit = _EXPLICIT_FORWARD.search(text)
    if explicit:
        return explicit.start()
    if _FORWARD_SUBJECT.match(subject or ""):
        outlook = _OUTLOOK_BLOCK.search(text)
        if outlook:
            return outlook.start()
    return None


def _forwarded_sender(text: str, start: int) -> Address | None:
    line = _FROM_LINE.search(text, start)
    if not line:
        return None
    value = re.sub(r"\[mailto:([^\]]+)\]", r"<\1>", line.group(1).strip())  # Outlook: Name [mailto:a@b]
    angle = re.match(r"^(.*?)<([^<>\s]+@[^<>\s]+)>", value)
    if angle:  # quote the name ourselves: Outlook writes "Reyes, Daniel <...>" and the comma splits it
        name = angle.group(1).strip().strip('"').replace('"', "")
        return parse_address(f'"{name}" <{angle.group(2)}>' if name else angle.group(2))
    return parse_address(next((w for w in value.split() if "@" in w), value))


def _forwarded_body(text: str, start: int) -> str:
    """The forwarded message's own text: after its From/Sent/To/Subject lines."""
    line = _FROM_LINE.search(text, start)
    gap = re.compile(r"\n[ \t]*\n").search(text, line.end() if line else start)
    return text[gap.end():] if gap else ""


def _display_name(msg: InboundMessage, sender: Address) -> str:
    for candidate in (sender, msg.from_):
        if candidate is not None and candidate.name and "@" not in candidate.name:
            if candidate is sender or candidate.email == sender.email:
                return _tidy_name(candidate.name)
    return ""


def _signature(text: str) -> tuple[str, str, str]:
    """(name, job title, organisation) from the block under the first sign-off."""
    lines = [line.rstrip() for line in own_words(text).splitlines()] or [""]
    start = next((i for i, line in enumerate(lines) if SIGN_OFF.match(line)), None)
    if start is None:
        return "", "", ""
    block = [clean_header(line) for line in lines[start + 1:start + 10]]
    # phone numbers, addresses and links are never the name, title or organisation
    block = [line for line in block if line and not line.startswith((">", "--"))
             and "@" not in line and not re.search(r"\d{4,}|\d{3,} \d{3,}|https?:|www\.", line)][:4]
    if not block:
        return "", "", ""
    name = block[0] if _looks_like_name(block[0]) else ""
    title = org = ""
    for item in block[1:] if name else block:
        if not org and _ORG_HINT.search(item) and (title or not _TITLE_HINT.search(item)):
            org = item
        elif not title and not org:
            title = item
    return name, title[:200], org[:200]


def _looks_like_name(line: str) -> bool:
    words = line.replace(",", " ").split()
    return (1 <= len(words) <= 5 and all(w[:1].isupper() or w[:1] in "'-(" for w in words)
            and not _ORG_HINT.search(line) and not _TITLE_HINT.search(line.replace("Dr ", "")))


def _tidy_name(name: str) -> str:
    name = clean_header(name).strip("'\" ")
    if name.count(",") == 1:  # "Smith, Jane" (Outlook directory style)
        last, first = (p.strip() for p in name.split(",", 1))
        if first and last and " " not in last:
            return f"{first} {last}"
    return name
