"""Parsing: raw bytes -> InboundMessage. The only module that imports mailparser.

mail-parser does the heavy lifting (bodies, attachments, defects); the standard library
reads the headers and steps in where mail-parser is known to lose something: a text part
that carries a file name (mail-parser files it as an attachment and the body is lost), a
broken MIME boundary (the body comes back as raw MIME), or a message it cannot read at all.
Every header value we keep has its control characters removed (RFC 2047 names may decode
to CR/LF). Oversize messages are read for headers only. Nothing but UnparseableMessage
leaves parse().
"""

from __future__ import annotations

import base64
import datetime as dt
import email
import re
from email import policy as email_policy
from email.message import Message as StdMessage
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parsedate_to_datetime

import mailparser

from intake.addresses import clean_header, is_valid_email
from intake.domain import Address, Attachment, InboundMessage
from intake.errors import IntakeError

MAX_HEADER_VALUE = 8192


class UnparseableMessage(IntakeError):
    """Nothing usable could be read from the bytes."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


def parse(data: bytes, *, max_bytes: int = 25 * 1024 * 1024) -> InboundMessage:
    """Parse one message. Oversize messages are stored with headers only (oversize=True)."""
    if not data or not data.strip():
        raise UnparseableMessage("empty message")
    data = data.replace(b"\x00", b"")  # NUL bytes are never meaningful in mail and break parsers
    oversize = len(data) > max_bytes
    try:
        std = _std_headers(data) if oversize else email.message_from_bytes(data, policy=email_policy.compat32)
    except Exception as exc:  # the stdlib is our last resort: anything it raises means no usable message
        raise UnparseableMessage(f"cannot read headers: {type(exc).__name__}") from None
    headers = _headers(std)
    if not headers:
        raise UnparseableMessage("no headers")
    defects = [type(d).__name__ for d in getattr(std, "defects", [])]
    text, html, attachments = ("", "", ())
    if not oversize:
        text, html, attachments, more = _bodies(data, std)
        defects.extend(more)
    else:
        defects.append(f"oversize: {len(data)} bytes > {max_bytes}; body not parsed")
    return _build(headers, text, html, attachments, std, len(data), oversize, defects)


def _std_headers(data: bytes) -> StdMessage:
    head = re.split(rb"\r?\n\r?\n", data[: 1024 * 1024], maxsplit=1)[0]
    return BytesHeaderParser(policy=email_policy.compat32).parsebytes(head)


def _headers(std: StdMessage) -> tuple[tuple[str, str], ...]:
    out = []
    for key, value in std.items():
        out.append((clean_header(str(key))[:200], clean_header(_decode_header(value))[:MAX_HEADER_VALUE]))
    return tuple(out)


def _decode_header(value: object) -> str:
    """RFC 2047 words decoded; raw 8-bit bytes read as UTF-8, else Latin-1."""
    from email.header import decode_header, make_header

    raw = str(value)
    try:
        return str(make_header(decode_header(raw)))
    except Exception:  # malformed encoded words: keep the raw text rather than lose the header
        return raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _bodies(data: bytes, std: StdMessage) -> tuple[str, str, tuple[Attachment, ...], list[str]]:
    defects: list[str] = []
    text = html = ""
    attachments: list[Attachment] = []
    try:
        parsed = mailparser.parse_from_bytes(data)
        text = "\n".join(parsed.text_plain or [])
        html = "\n".join(parsed.text_html or [])
        for att in parsed.attachments or []:
            attachments.append(_attachment(att))
    except Exception as exc:  # mail-parser gave up: the stdlib walk below still reads the parts
        defects.append(f"mailparser: {type(exc).__name__}")
    if _looks_like_raw_mime(text) or (not text and not html):
        std_text, std_html, std_atts = _std_bodies(std)
        if std_text or std_html:
            defects.append("bodies read by the standard library")
            text, html = std_text, std_html
            if not attachments:
                attachments = std_atts
    # Parts mail-parser drops (text/rfc822-headers in bounces, some message/* parts) are
    # kept as attachments: bounce handling reads them for our Message-IDs.
    have = {(a.content_type, a.size) for a in attachments}
    for part in std.walk():
        ctype = part.get_content_type()
        if ctype in _KEEP_TYPES and not part.is_multipart():
            payload = part.get_payload(decode=True) or b""
            if (ctype, len(payload)) not in have:
                attachments.append(Attachment(clean_header(part.get_filename() or "") or ctype.replace("/", "-"), ctype, payload))
    # A text part with a file name (no 'attachment' disposition) was the body.
    if not text:
        for att in attachments:
            if att.content_type == "text/plain" and att.size < 1024 * 1024:
                text = att.data.decode("utf-8", "replace")
                defects.append("body recovered from a named text part")
                break
    return _clean_body(text), _clean_body(html), tuple(attachments), defects


_KEEP_TYPES = ("text/rfc822-headers", "message/delivery-status", "message/disposition-notification")


def _std_bodies(std: StdMessage) -> tuple[str, str, list[Attachment]]:
    text, html, atts = [], [], []
    for part in std.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        disposition = (part.get("Content-Disposition") or "").lower()
        payload = part.get_payload(decode=True) or b""
        if ctype in ("text/plain", "text/html") and "attachment" not in disposition:
            decoded = _decode_text(payload, part.get_content_charset())
            (text if ctype == "text/plain" else html).append(decoded)
        else:
            atts.append(Attachment(clean_header(part.get_filename() or "") or "attachment", ctype, payload))
    return "\n".join(text), "\n".join(html), atts


def _decode_text(payload: bytes, charset: str | None) -> str:
    for candidate in (charset, "utf-8", "cp1252", "latin-1"):
        if not candidate:
            continue
        try:
            return payload.decode(candidate)
        except (LookupError, UnicodeDecodeError):
            continue
    return payload.decode("utf-8", "replace")


def _attachment(att: dict) -> Attachment:
    payload = att.get("payload") or ""
    if att.get("binary"):
        try:
            data = base64.b64decode(payload)
        except Exception:  # a broken base64 body: keep the text we were given
            data = payload.encode("utf-8", "replace")
    else:
        data = payload.encode("utf-8", "replace") if isinstance(payload, str) else bytes(payload)
    ctype = (att.get("mail_content_type") or "application/octet-stream").split(";")[0].strip().lower()
    return Attachment(clean_header(att.get("filename") or "") or "attachment", ctype, data)


_RAW_MIME = re.compile(r"^(--[^\n]{6,}\n)?\s*Content-(Type|Transfer-Encoding):", re.IGNORECASE | re.MULTILINE)


def _looks_like_raw_mime(text: str) -> bool:
    head = text[:2000]
    return bool(head) and bool(_RAW_MIME.search(head)) and head.lstrip().startswith(("--", "Content-", "content-"))


def _clean_body(text: str) -> str:
    return text.replace("\x00", "").replace("\r\n", "\n")


def _build(headers: tuple[tuple[str, str], ...], text: str, html: str, attachments: tuple[Attachment, ...],
           std: StdMessage, size: int, oversize: bool, defects: list[str]) -> InboundMessage:
    def first(name: str) -> str:
        lname = name.lower()
        return next((v for k, v in headers if k.lower() == lname), "")

    def all_of(name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in headers if k.lower() == lname]

    def addresses(name: str) -> tuple[Address, ...]:
        return _addresses([str(v) for v in (std.get_all(name) or [])])

    delivered = tuple(dict.fromkeys(a.email for a in addresses("Delivered-To") + addresses("X-Original-To")))
    from_, reply_to = addresses("From"), addresses("Reply-To")
    return InboundMessage(
        message_id=first("Message-ID").strip().strip("<>").strip(),
        subject=first("Subject"),
        from_=from_[0] if from_ else None,
        reply_to=reply_to[0] if reply_to else None,
        to=addresses("To"),
        cc=addresses("Cc"),
        delivered_to=delivered,
        date=_date(first("Date")),
        in_reply_to=_ids(first("In-Reply-To"))[0] if _ids(first("In-Reply-To")) else "",
        references=_ids(first("References")),
        headers=headers,
        text=text,
        html=html,
        attachments=attachments,
        content_type=(std.get_content_type() if std is not None else "text/plain"),
        size=size,
        oversize=oversize,
        defects=tuple(defects),
    )


def _addresses(raw_values: list[str]) -> tuple[Address, ...]:
    """Addresses parsed from the raw header, and only then display names decoded: decoding
    first would let an encoded CR/LF or "Bcc:" in a name change which address is read."""
    out: list[Address] = []
    for name, addr in getaddresses([v.replace("\r", " ").replace("\n", " ") for v in raw_values]):
        addr = addr.strip().lower()
        if is_valid_email(addr) and all(a.email != addr for a in out):
            out.append(Address(email=addr, name=clean_header(_decode_header(name)).strip("'\" ")))
    return tuple(out)


def _ids(value: str) -> tuple[str, ...]:
    found = re.findall(r"<([^<>\s]+)>", value or "")
    if not found and value.strip():
        found = [v for v in value.split() if "@" in v]
    return tuple(f.strip() for f in found)


def _date(value: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
