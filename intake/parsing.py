"""Parsing: raw bytes -> InboundMessage. The only module that imports mailparser.

mail-parser does the heavy lifting (bodies, attachments, defects); the standard library
reads the headers and steps in where mail-parser is known to lose something:

- a text part that carries a file name (mail-parser files it as an attachment: body lost);
- a broken MIME boundary (the body comes back empty or as raw MIME): we look for the
  boundary the parts really use and read the message again;
- charset labels that lie about their bytes (mail-parser decodes with replacement
  characters): we decode the part ourselves, UTF-8 first, single bytes as Windows-1252;
- raw 8-bit header bytes (read as UTF-8, else Windows-1252);
- a message it cannot read at all.

Every header value we keep has its control characters removed (RFC 2047 names may decode
to CR/LF). Messages over ``max_bytes`` are read for headers only, never decoded.
Nothing but UnparseableMessage leaves parse(); that is raised only when there are no
headers at all (no sender, no subject, nothing a coordinator could act on).
"""

from __future__ import annotations

import base64
import codecs
import datetime as dt
import functools
import re
import uuid
from dataclasses import dataclass
from email import policy as email_policy
from email.header import decode_header, make_header
from email.message import Message as StdMessage
from email.feedparser import BytesFeedParser
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parsedate_to_datetime
from typing import Union

import mailparser

from intake.addresses import clean_header, is_valid_email, parse_address
from intake.domain import Address, Attachment, InboundMessage
from intake.errors import IntakeError

MAX_HEADER_VALUE = 8192
HEAD_LIMIT = 1024 * 1024  # an oversize message's header block is read from this many bytes at most
_KEEP_TYPES = ("text/rfc822-headers", "message/rfc822", "message/delivery-status", "message/disposition-notification")


class UnparseableMessage(IntakeError):
    """Nothing usable could be read from the bytes."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class Unparseable:
    """`parse_or_reason`'s answer for bytes nothing usable could be read from: a value, not
    an exception, because it crosses from the parse process to the worker."""

    reason: str


ParseResult = Union[InboundMessage, Unparseable]


def parse_or_reason(data: bytes, *, max_bytes: int) -> ParseResult:
    """`parse`, with an unparseable message as a value."""
    try:
        return parse(data, max_bytes=max_bytes)
    except UnparseableMessage as exc:
        return Unparseable(exc.reason)


@dataclass(frozen=True)
class QuickHeaders:
    """What deduplication needs before the full parse: the Message-ID and the senders."""

    message_id: str
    senders: tuple[str, ...]  # the From and Reply-To addresses, lower case


def quick_headers(data: bytes) -> QuickHeaders:
    """The Message-ID and sender addresses from the header block only (cheap; the full
    parse comes later and decides: these only choose what to look up in bulk)."""
    limit = 256 * 1024
    # Sliced before splitting: splitting the whole message would copy a 10 MB attachment.
    head = data[:limit + 4].split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0][:limit]
    try:
        headers = BytesHeaderParser(policy=email_policy.compat32).parsebytes(head)
        senders = tuple(a.email.lower() for a in (parse_address(str(headers.get(name, "") or ""))
                                                  for name in ("From", "Reply-To")) if a is not None)
        return QuickHeaders(str(headers.get("Message-ID", "") or "").strip(), senders)
    except Exception:  # a header block the stdlib cannot read: fall back to the content hash
        return QuickHeaders("", ())


def quick_message_id(data: bytes) -> str:
    """The Message-ID as the pipeline reads it for deduplication (and erasure for its tombstones)."""
    return quick_headers(data).message_id


def parse(data: bytes, *, max_bytes: int = 25 * 1024 * 1024) -> InboundMessage:
    """Parse one message. Oversize messages are kept with headers only (oversize=True)."""
    if not data or data.isspace():  # isspace, not strip(): no copy of a 50 MB message
        raise UnparseableMessage("empty message")
    try:
        return _parse(data, max_bytes)
    except UnparseableMessage:
        raise
    except Exception as exc:
        # Hostile input reaches stdlib and mail-parser corners we cannot enumerate
        # (RecursionError, MemoryError on absurd parts, library bugs). One bad message must
        # not stop a mailbox: retry for headers only, and only give up if even that fails.
        return _headers_only(data, f"parser failed: {type(exc).__name__}")


def _parse(data: bytes, max_bytes: int) -> InboundMessage:
    if len(data) > max_bytes:
        return _headers_only(data, f"oversize: {len(data)} bytes > {max_bytes}; body not parsed", oversize=True)
    if b"\x00" in data:  # NUL bytes are never meaningful in mail and break parsers (test first: no copy)
        data = data.replace(b"\x00", b"")
    std = _message_from_bytes(data)
    headers = _require_headers(std)
    defects = [type(d).__name__ for d in std.defects]
    repaired = _repair_boundary(data, std)
    if repaired is not None:
        data, std = repaired, _message_from_bytes(repaired)
        defects.append("MIME boundary repaired")
    text, html, attachments, more = _bodies(std)
    return _build(headers, std, text, html, attachments, len(data), False, defects + more)


_FEED_CHUNK = 64 * 1024


def _message_from_bytes(data: bytes) -> StdMessage:
    """email.message_from_bytes (compat32), fed in slices. The stdlib's own version decodes
    the whole message into one str and reads it through a StringIO, which holds it at four
    bytes a character: a 14 MB message peaked at 110 MB; fed like this, at a third of that.
    Long base64 bodies are set aside first (see _set_aside_base64)."""
    slim, blocks = _set_aside_base64(data)
    std = _feed(slim)
    if blocks and not _put_back(std, blocks):
        return _feed(data)  # a placeholder was not found where it was left: read it all
    return std


def _feed(data: bytes) -> StdMessage:
    parser = BytesFeedParser(policy=email_policy.compat32)
    for start in range(0, len(data), _FEED_CHUNK):
        parser.feed(data[start:start + _FEED_CHUNK])
    return parser.close()


# A run of at least this many bytes of base64 lines (an attachment) is read into its part
# as one string: the feed parser would hold it as a list of 76-character lines first, at
# about three times the size (a 10 MB attachment: 25 MB of lines, the worker's peak).
_SET_ASIDE_BYTES = 512 * 1024
# One character class, not a repeated group of lines: the regex engine matches it without
# keeping a backtracking entry per line (which cost more memory than the lines themselves).
_BASE64_RUN = re.compile(rb"(?<=\n)[A-Za-z0-9+/=][A-Za-z0-9+/=\r\n]{%d,}" % (_SET_ASIDE_BYTES - 1))


_TOKEN_PREFIX = "INTAKE"  # + a random hex: the placeholder of one run


def _set_aside_base64(data: bytes) -> tuple[bytes, dict[str, str]]:
    """The message with each long run of base64 lines replaced by a unique placeholder,
    and the runs by placeholder. A run is whole lines from a line start (header lines,
    boundaries and prose end it: ':', '-' and spaces are not base64), without its last line
    ending, so the parser sees the same structure around the placeholder."""
    if len(data) < _SET_ASIDE_BYTES:
        return data, {}
    pieces: list[bytes] = []
    blocks: dict[str, str] = {}
    view = memoryview(data)
    last = 0
    for match in _BASE64_RUN.finditer(data):
        start, end = match.span()
        end = data.rfind(b"\n", start, end)  # back to the end of the last whole line
        if end > start and data[end - 1:end] == b"\r":
            end -= 1
        if end - start < _SET_ASIDE_BYTES:
            continue
        token = f"{_TOKEN_PREFIX}{uuid.uuid4().hex}"
        blocks[token] = codecs.decode(view[start:end], "ascii")
        pieces += [view[last:start].tobytes(), token.encode("ascii")]
        last = end
    if not blocks:
        return data, {}
    pieces.append(view[last:].tobytes())
    return b"".join(pieces), blocks


def _put_back(std: StdMessage, blocks: dict[str, str]) -> bool:
    """Each run back in the part where its placeholder is; False unless every placeholder
    was found exactly once. (A part that is all placeholder takes the run itself: no copy.)"""
    expected = len(blocks)
    found = 0
    for part in std.walk():
        payload = part.get_payload()
        if not isinstance(payload, str) or _TOKEN_PREFIX not in payload:
            continue
        for token in [t for t in blocks if t in payload]:
            if payload.count(token) != 1:
                return False
            run = blocks.pop(token)
            payload = run if payload == token else payload.replace(token, run)
            found += 1
        part.set_payload(payload)
    return found == expected


def _headers_only(data: bytes, why: str, *, oversize: bool = False) -> InboundMessage:
    # Slicing first keeps a 50 MB message from being copied or decoded.
    head = re.split(rb"\r?\n\r?\n", data[:HEAD_LIMIT], maxsplit=1)[0].replace(b"\x00", b"")
    try:
        std = BytesHeaderParser(policy=email_policy.compat32).parsebytes(head)
        headers = _require_headers(std)
        return _build(headers, std, "", "", (), len(data), oversize, [why])
    except UnparseableMessage:
        raise
    except Exception as exc:  # the last resort failed too: there is nothing usable
        raise UnparseableMessage(f"cannot read headers: {type(exc).__name__}") from None


def _require_headers(std: StdMessage) -> tuple[tuple[str, str], ...]:
    headers = tuple((clean_header(str(k))[:200], clean_header(_header_text(v))[:MAX_HEADER_VALUE])
                    for k, v in std.raw_items())
    if not headers:
        raise UnparseableMessage("no headers")
    return headers


# -- text decoding ------------------------------------------------------------------------

def _cp1252_fallback(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: a byte that is not UTF-8 is read as Windows-1252 (Latin-1 for
    the five bytes cp1252 leaves undefined). Mail mixing the two is common."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    byte = exc.object[exc.start:exc.start + 1]
    try:
        return byte.decode("cp1252"), exc.start + 1
    except UnicodeDecodeError:
        return byte.decode("latin-1"), exc.start + 1


codecs.register_error("intake-cp1252", _cp1252_fallback)
_UTF8_LIKE = {"", "utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "latin-1", "latin1", "windows-1252", "cp1252"}


def decode_text(payload: bytes, charset: str | None) -> str:
    """Bytes of a text part as text, whatever its label claims.

    Valid UTF-8 with non-ASCII bytes is UTF-8 even when labelled ASCII or Latin-1 (that
    label is the usual lie); any other label is tried strictly; the rest is UTF-8 with
    single bytes read as Windows-1252."""
    label = (charset or "").strip().lower()
    if label not in _UTF8_LIKE:
        try:
            return payload.decode(label)
        except (LookupError, UnicodeDecodeError, ValueError):
            pass
    return payload.decode("utf-8", "intake-cp1252")


def _header_text(value: object) -> str:
    """A header value as text: raw 8-bit bytes read as UTF-8/cp1252, RFC 2047 words decoded."""
    # Decoding is superlinear in encoded words and we keep MAX_HEADER_VALUE characters anyway.
    raw = (str(value) if not isinstance(value, str) else value)[: MAX_HEADER_VALUE * 2]
    if any("\udc80" <= ch <= "\udcff" for ch in raw):  # compat32 smuggles 8-bit bytes as surrogates
        raw = decode_text(raw.encode("utf-8", "surrogateescape"), "utf-8")
    if "=?" not in raw:
        return raw
    try:
        return str(make_header(decode_header(raw)))
    except Exception:  # malformed encoded words (bad base64, unknown charset): keep the raw text
        return raw


# -- bodies -------------------------------------------------------------------------------

_BOUNDARY_LINE = re.compile(rb"^--([^\s\"]{1,200}?)(?:--)?[ \t]*\r?$", re.MULTILINE)


def _repair_boundary(data: bytes, std: StdMessage) -> bytes | None:
    """Bytes with the multipart boundary the parts really use, when the declared one is absent."""
    if not std.is_multipart() and std.get_content_maintype() != "multipart":
        return None
    declared = std.get_boundary()
    split = re.search(rb"\r?\n\r?\n", data)
    if not declared or split is None:
        return None
    # Searched in place: slicing the body off would copy a 10 MB attachment.
    if data.find(b"--" + declared.encode("utf-8", "surrogateescape"), split.start()) != -1:
        return None
    found = _BOUNDARY_LINE.search(data, split.start())
    if found is None:
        return None
    head = data[:split.start()]
    fixed = re.sub(rb"boundary\s*=\s*(\"[^\"]*\"|[^\s;]+)", b'boundary="' + found.group(1).replace(b"\\", b"\\\\") + b'"',
                   head, count=1, flags=re.IGNORECASE)
    return fixed + data[split.start():] if fixed != head else None


def _bodies(std: StdMessage) -> tuple[str, str, tuple[Attachment, ...], list[str]]:
    defects: list[str] = []
    text = html = ""
    attachments: list[Attachment] = []
    try:
        parsed = mailparser.MailParser(_mime_view(std))
        text = "\n".join(parsed.text_plain or [])
        html = "\n".join(parsed.text_html or [])
        attachments = [_attachment(att) for att in parsed.attachments or []]
    except Exception as exc:  # mail-parser gave up on this message: the stdlib walk below still reads it
        defects.append(f"mailparser: {type(exc).__name__}")
    if not (text or html) or _looks_like_raw_mime(text) or "\ufffd" in text + html:
        std_text, std_html, std_atts = _std_bodies(std)
        if (std_text or std_html) and (std_text + std_html).count("\ufffd") <= (text + html).count("\ufffd"):
            defects.append("bodies read by the standard library")
            text, html = std_text, std_html
            attachments = attachments or std_atts
    # Parts mail-parser drops (text/rfc822-headers in bounces, report parts) are kept as
    # attachments: bounce handling reads them for our Message-IDs.
    have = {(a.content_type, a.size) for a in attachments}
    for part in std.walk():
        ctype = part.get_content_type()
        if ctype in _KEEP_TYPES:
            payload = _report_bytes(part)
            if (ctype, len(payload)) not in have:
                attachments.append(Attachment(clean_header(part.get_filename() or "") or ctype.replace("/", "-"), ctype, payload))
    if not text:  # a text part with a file name (no 'attachment' disposition) was the body
        for att in attachments:
            if att.content_type == "text/plain" and att.size < 1024 * 1024:
                text = decode_text(att.data, "utf-8")
                defects.append("body recovered from a named text part")
                break
    if not text and not html and std.is_multipart() is False and std.get_content_maintype() == "multipart":
        text = decode_text(std.get_payload(decode=False).encode("utf-8", "surrogateescape"), "utf-8")
        defects.append("unreadable multipart kept as raw text")
    return _clean_body(text), _clean_body(html), tuple(attachments), defects


def _report_bytes(part: StdMessage) -> bytes:
    """A report part's bytes. compat32 reads message/delivery-status as a list of header
    blocks rather than a payload, so those are joined back together."""
    if not part.is_multipart():
        return part.get_payload(decode=True) or b""
    return b"\n".join(block.as_bytes() for block in part.get_payload() if isinstance(block, StdMessage))


_MIME_HEADER = re.compile(r"^(content-|mime-version)", re.IGNORECASE)


def _mime_view(std: StdMessage) -> StdMessage:
    """The parsed message with only its MIME headers, sharing its parts: mail-parser reads
    our bodies, never our headers (the stdlib does; a 10,000-address To: costs mail-parser
    seconds), and reading the same bytes a second time would cost a second full parse and a
    second copy of every attachment."""
    view = StdMessage()
    for name, value in std.raw_items():
        if _MIME_HEADER.match(name):
            view.set_raw(name, value)
    if not view.keys():
        view.set_raw("MIME-Version", "1.0")
    view.set_payload(std.get_payload())
    view.preamble, view.epilogue, view.defects = std.preamble, std.epilogue, std.defects
    return view


def _std_bodies(std: StdMessage) -> tuple[str, str, list[Attachment]]:
    text: list[str] = []
    html: list[str] = []
    atts: list[Attachment] = []
    for part in std.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        disposition = (part.get("Content-Disposition") or "").lower()
        payload = part.get_payload(decode=True) or b""
        if ctype in ("text/plain", "text/html") and "attachment" not in disposition:
            (text if ctype == "text/plain" else html).append(decode_text(payload, part.get_content_charset()))
        elif ctype not in _KEEP_TYPES:
            atts.append(Attachment(clean_header(_header_text(part.get_filename() or "")) or "attachment", ctype, payload))
    return "\n".join(text), "\n".join(html), atts


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


# -- the value ----------------------------------------------------------------------------

def _build(headers: tuple[tuple[str, str], ...], std: StdMessage, text: str, html: str,
           attachments: tuple[Attachment, ...] | list[Attachment], size: int, oversize: bool,
           defects: list[str]) -> InboundMessage:
    def first(name: str) -> str:
        return next((v for k, v in headers if k.lower() == name.lower()), "")

    def addresses(*names: str) -> tuple[Address, ...]:
        return _addresses([str(v) for n in names for k, v in std.raw_items() if k.lower() == n.lower()])

    from_, reply_to = addresses("From"), addresses("Reply-To")
    in_reply_to = _ids(first("In-Reply-To"))
    return InboundMessage(
        message_id=first("Message-ID").strip().strip("<>").strip(),
        subject=first("Subject"),
        from_=from_[0] if from_ else None,
        reply_to=reply_to[0] if reply_to else None,
        to=addresses("To"),
        cc=addresses("Cc"),
        delivered_to=tuple(a.email for a in addresses("Delivered-To", "X-Original-To")),
        date=_date(first("Date")),
        in_reply_to=in_reply_to[0] if in_reply_to else "",
        references=_ids(" ".join(v for k, v in headers if k.lower() == "references")),
        headers=headers,
        text=text,
        html=html,
        attachments=tuple(attachments),
        content_type=std.get_content_type(),
        size=size,
        oversize=oversize,
        defects=tuple(defects),
    )


def _addresses(raw_values: list[str]) -> tuple[Address, ...]:
    """Addresses parsed from the raw header, and only then display names decoded: decoding
    first would let an encoded CR/LF or "Bcc:" in a name change which address is read."""
    if not raw_values:
        return ()
    values = tuple(raw_values)
    # Short values recur (the group addresses in To, an applicant's From on each message)
    # and the stdlib's address parser is slow; long ones (a hostile To) are not kept.
    return _addresses_cached(values) if sum(map(len, values)) <= _CACHED_HEADER_CHARS else _addresses_of(values)


_CACHED_HEADER_CHARS = 1000


def _addresses_of(raw_values: tuple[str, ...]) -> tuple[Address, ...]:
    out: dict[str, Address] = {}
    values = [v.replace("\r", " ").replace("\n", " ") for v in raw_values]
    for name, addr in getaddresses(values):
        addr = addr.strip().lower()
        if addr not in out and is_valid_email(addr):
            out[addr] = Address(email=addr, name=clean_header(_header_text(name)).strip("'\" "))
    return tuple(out.values())


_addresses_cached = functools.lru_cache(maxsize=256)(_addresses_of)


def _ids(value: str) -> tuple[str, ...]:
    found = re.findall(r"<([^<>\s]+)>", value or "")
    if not found and value.strip():
        found = [v for v in value.split() if "@" in v]
    return tuple(dict.fromkeys(f.strip() for f in found))


def _date(value: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
