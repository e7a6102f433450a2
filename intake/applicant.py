"""Who an application is about: the sender, or the person in a forwarded message. Pure.

Email: Reply-To when valid, else From. A forwarded message (Outlook "From: ... Sent: ...",
Gmail "---------- Forwarded message ---------", Apple "Begin forwarded message:") names its
original sender: that person is the applicant (a PA forwarding for a director). Name, job
title and organisation come from the display name and the signature under a sign-off
("Kind regards,\\nJane Smith\\nDirector of Nursing\\nLeeds Teaching Hospitals NHS Trust").
"""

from __future__ import annotations

import re

from intake.addresses import clean_header, parse_address
from intake.domain import Applicant, InboundMessage

_FORWARD_MARK = re.compile(r"^\s*(-{2,}\s*forwarded message\s*-{2,}|begin forwarded message:|-----original message-----)\s*$",
                           re.IGNORECASE | re.MULTILINE)
_FROM_LINE = re.compile(r"^\s*\*?from:\*?\s*(.+)$", re.IGNORECASE | re.MULTILINE)
_SIGN_OFF = re.compile(r"^\s*(kind regards|best regards|warm regards|regards|best wishes|many thanks|thanks|thank you|"
                       r"yours sincerely|yours faithfully|with thanks|all the best|cheers|best)[,!.]?\s*$", re.IGNORECASE)
_ORG_HINT = re.compile(r"\b(nhs|trust|foundation|board|council|hospital|university|icb|integrated care|"
                       r"department|ltd|limited|college|service|england|scotland|wales|ireland)\b", re.IGNORECASE)


def extract_applicant(msg: InboundMessage) -> Applicant | None:
    forwarded = _forwarded_sender(msg.text)
    if forwarded is not None:
        body_after = msg.text[_FORWARD_MARK.search(msg.text).end():] if _FORWARD_MARK.search(msg.text) else msg.text
        name, title, org = _signature(body_after)
        return Applicant(email=forwarded.email, name=forwarded.name or name, job_title=title, organisation=org)
    sender = msg.reply_to or msg.from_
    if sender is None:
        return None
    name, title, org = _signature(msg.text)
    display = sender.name if sender.name and "@" not in sender.name else (msg.from_.name if msg.from_ and msg.from_.name and "@" not in msg.from_.name else "")
    return Applicant(email=sender.email, name=_tidy_name(display) or name, job_title=title, organisation=org)


def _forwarded_sender(text: str):  # type: ignore[no-untyped-def]
    mark = _FORWARD_MARK.search(text or "")
    if not mark:
        return None
    line = _FROM_LINE.search(text, mark.end())
    if not line:
        return None
    value = line.group(1).strip()
    value = re.sub(r"\[mailto:([^\]]+)\]", r"<\1>", value)  # Outlook: Name [mailto:a@b]
    return parse_address(value)


def _signature(text: str) -> tuple[str, str, str]:
    lines = [l.rstrip() for l in (text or "").splitlines()]
    for i, line in enumerate(lines):
        if _SIGN_OFF.match(line):
            block = [clean_header(l) for l in lines[i + 1:i + 8]]
            block = [l for l in block if l and not l.startswith((">", "--"))][:4]
            if not block:
                return "", "", ""
            name = block[0] if _looks_like_name(block[0]) else ""
            rest = block[1:] if name else block
            title = org = ""
            for item in rest:
                if "@" in item or re.search(r"\d{4,}", item):
                    continue
                if not org and _ORG_HINT.search(item) and (title or not _looks_like_title(item)):
                    org = item
                elif not title:
                    title = item
            return name, title[:200], org[:200]
    return "", "", ""


def _looks_like_name(line: str) -> bool:
    words = line.split()
    return 1 <= len(words) <= 5 and all(w[:1].isupper() or w[:1] in "'-" for w in words) and not _ORG_HINT.search(line)


def _looks_like_title(line: str) -> bool:
    return bool(re.search(r"\b(director|chief|head|manager|officer|lead|consultant|nurse|doctor|dr|chair|deputy|associate)\b",
                          line, re.IGNORECASE))


def _tidy_name(name: str) -> str:
    name = clean_header(name).strip("'\" ")
    if "," in name and name.count(",") == 1:  # "Smith, Jane" (Outlook directory style)
        last, first = (p.strip() for p in name.split(",", 1))
        if first and last and " " not in last:
            return f"{first} {last}"
    return name
