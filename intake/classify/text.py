"""The sender's own words: what rules, routing and applicant extraction read for meaning.

Quoted replies ("> ..."), everything under a reply or forward header ("On ... wrote:",
"-----Original Message-----", an Outlook "From: / Sent:" block, "Forwarded message") and,
on request, the signature under a sign-off are cut away, so a group named in a quoted
newsletter or a trust name in a signature ("Black Country ...") is not read as the
sender's choice. Pure.
"""

from __future__ import annotations

import html as html_lib
import re

from intake.domain import InboundMessage

OWN_WORDS_LIMIT = 4000  # the opening of a message says what it is; long tails are quotes and disclaimers

_REPLY_HEADER = re.compile(
    r"^\s*(on .{0,200}wrote:?|-{2,}\s*original message\s*-{2,}|-{2,}\s*forwarded message\s*-{2,}|"
    r"begin forwarded message:|_{10,}|\*?from:\*?\s.*)\s*$",
    re.IGNORECASE)
SIGN_OFF = re.compile(
    r"^\s*(kind regards|best regards|warm regards|warmest regards|regards|best wishes|many thanks|thanks|thank you|"
    r"yours sincerely|yours faithfully|with thanks|with best wishes|all the best|cheers|best)[,!.]?\s*$",
    re.IGNORECASE)
_SIG_DASHES = re.compile(r"^--\s*$")
_BLOCKS = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_BREAKS = re.compile(r"<\s*(br|/p|/div|/tr|/li|/h\d)\b[^>]*>", re.IGNORECASE)
_TAGS = re.compile(r"<[^>]*>")


def html_to_text(html: str) -> str:
    """Readable text from HTML: scripts and styles dropped, block ends as line breaks."""
    text = _TAGS.sub(" ", _BREAKS.sub("\n", _BLOCKS.sub(" ", html or "")))
    lines = (" ".join(html_lib.unescape(line).replace("\xa0", " ").split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def body_text(msg: InboundMessage) -> str:
    """Plain text, else the HTML's text."""
    return msg.text or html_to_text(msg.html)


def own_words(text: str, *, signature: bool = True) -> str:
    """The sender's text: quoted lines and everything after a reply header dropped;
    with signature=False also everything from a sign-off ("Kind regards,") or "-- " on."""
    kept: list[str] = []
    for line in (text or "")[: OWN_WORDS_LIMIT * 4].splitlines():
        stripped = line.strip()
        if stripped.startswith(">"):
            continue
        if _REPLY_HEADER.match(stripped):
            break
        if not signature and kept and (SIGN_OFF.match(stripped) or _SIG_DASHES.match(line)):
            break
        kept.append(line)
    return "\n".join(kept)[:OWN_WORDS_LIMIT]
