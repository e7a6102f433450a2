"""Hostile and malformed input: parse never raises anything but UnparseableMessage, and the
pure core (classify, route, extract_applicant) always answers for whatever parse returns.

Hypothesis generates header soup, lying charsets and mutated corpus files; the fixed cases
cover deep nesting, huge headers, 10,000 recipients, a zip bomb and a 50 MB attachment.
"""

from __future__ import annotations

import base64
import io
import tracemalloc
import zipfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intake.applicant import extract_applicant
from intake.classify import ClassifyContext, classify
from intake.domain import TRIAGE, Applicant, InboundMessage, Kind, Verdict
from intake.groups import load_groups
from intake.parsing import UnparseableMessage, parse
from intake.routing import route
from tests.support.config import REPO

MAIL = Path(__file__).parent / "mail"
CORPUS = sorted(p.read_bytes() for p in MAIL.rglob("*.eml"))
GROUPS = load_groups(REPO / "config" / "groups.toml")
CTX = ClassifyContext(own_addresses=frozenset({"swig@example.org"}), message_id_domain="example.org",
                      known_message_ids=frozenset({"ack-000042@example.org"}), known_references=frozenset({"BLFI-000123"}))
CODES = {g.code for g in GROUPS} | {TRIAGE}
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def survive(raw: bytes, **kw) -> InboundMessage | None:
    """The whole pure core on one input, checking its promises; None when unparseable."""
    try:
        msg = parse(raw, **kw)
    except UnparseableMessage as exc:
        assert exc.reason
        return None
    assert isinstance(msg, InboundMessage)
    assert all("\r" not in v and "\n" not in v and "\x00" not in v for _, v in msg.headers)
    assert "\x00" not in msg.text + msg.html
    verdict = classify(msg, CTX)
    assert isinstance(verdict, Verdict) and isinstance(verdict.kind, Kind) and verdict.reason
    routed = route(msg, GROUPS)
    assert routed.groups and set(routed.groups) <= CODES and routed.reason
    applicant = extract_applicant(msg)
    assert applicant is None or (isinstance(applicant, Applicant) and "@" in applicant.email)
    return msg


# -- generated ----------------------------------------------------------------------------

HEADER_NAMES = st.sampled_from(["From", "To", "Cc", "Reply-To", "Subject", "Date", "Message-ID", "In-Reply-To",
                                "References", "Content-Type", "Content-Transfer-Encoding", "Auto-Submitted",
                                "List-Id", "X-Spam-Flag", "Return-Path", "Delivered-To", "X-Intake-Loop", "MIME-Version"])
NASTY_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=80) | st.sampled_from([
    "=?utf-8?b?QUJD?=", "=?utf-8?q?a=0D=0Ab?=", "=?bogus?x?zz?=", "=?utf-8?b?!!!?=", "<>", "<<a@b>>", "a@", "@b",
    'multipart/mixed; boundary="x"', "multipart/report; report-type=delivery-status", "text/plain; charset=koi8-r",
    "base64", "quoted-printable", "MAILER-DAEMON <>", "undisclosed-recipients:;", '"Smith, Jane" <jane@example.org>',
    "blfi+swig@example.org", "Thu, 31 Feb 2026 99:99:99 +9999", "\x00\x01\x7f", "é" * 50])


@st.composite
def header_soup(draw) -> bytes:
    lines = []
    for name, value in draw(st.lists(st.tuples(HEADER_NAMES | st.text(min_size=1, max_size=12), NASTY_TEXT), max_size=15)):
        lines.append(f"{name}: {value}".encode("utf-8", "surrogatepass"))
    sep = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    body = draw(st.binary(max_size=400) | st.sampled_from([b"--x\nContent-Type: text/plain\n\nhi\n--x--\n", b""]))
    return sep.join(lines) + sep + sep + body


@FAST
@given(header_soup())
def test_header_soup(raw: bytes):
    survive(raw)


@FAST
@given(st.binary(max_size=3000))
def test_random_bytes(raw: bytes):
    survive(raw)


@FAST
@given(st.sampled_from(["us-ascii", "utf-8", "iso-8859-1", "koi8-r", "shift_jis", "utf-16", "x-unknown", "", "utf-7",
                        "iso-2022-jp", "windows-1252", "utf-8; format=flowed", '"'  ]),
       st.binary(max_size=500), st.sampled_from(["8bit", "base64", "quoted-printable", "7bit", "x-uuencode"]),
       st.booleans())
def test_charset_labels_that_lie(charset: str, payload: bytes, encoding: str, multipart: bool):
    part = f"Content-Type: text/plain; charset={charset}\nContent-Transfer-Encoding: {encoding}\n\n".encode() + payload
    if multipart:
        body = b'Content-Type: multipart/alternative; boundary="b"\n\n--b\n' + part + b"\n--b--\n"
    else:
        body = part
    msg = survive(b"From: a.person@example.nhs.uk\nTo: swig@example.org\nSubject: =?" + charset.encode() + b"?q?x?=\n" + body)
    assert msg is not None  # there are headers, so there is always a best-effort message


@FAST
@given(st.sampled_from(CORPUS), st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=8), st.integers(0, 8)),
                                         min_size=1, max_size=6))
def test_mutated_corpus(original: bytes, edits: list[tuple[int, bytes, int]]):
    data = bytearray(original)
    for at, insert, delete in edits:
        at = at % (len(data) + 1)
        data[at:at + delete] = insert
    survive(bytes(data))


# -- fixed hostile cases ------------------------------------------------------------------

def test_empty_and_whitespace_and_blob():
    for raw in (b"", b"\r\n\r\n", b"\x00" * 64, (MAIL / "hostile/garbage_blob.eml").read_bytes()):
        assert survive(raw) is None


def test_nested_multiparts_1000_deep():
    body = b"Content-Type: text/plain\n\nI would like to join.\n"
    for i in range(1000):
        b = f"b{i}".encode()
        body = b'Content-Type: multipart/mixed; boundary="' + b + b'"\n\n--' + b + b"\n" + body + b"\n--" + b + b"--\n"
    msg = survive(b"From: deep@example.nhs.uk\nTo: sdig@example.org\nSubject: deep\n" + body)
    assert msg is not None and msg.from_.email == "deep@example.nhs.uk"


def test_ten_thousand_recipients():
    to = ", ".join(f"Person {i} <p{i}@example.nhs.uk>" for i in range(10_000))
    msg = survive(f"From: a@example.nhs.uk\nTo: {to}\nCc: sbameig@example.org\nSubject: many\n\nhello\n".encode())
    assert len(msg.to) == 10_000
    assert route(msg, GROUPS).groups == ("SBAMEIG",)


def test_one_megabyte_single_line_headers():
    plain = b"From: a@example.nhs.uk\nSubject: " + b"x" * 1024 * 1024 + b"\n\nhello\n"
    encoded = b"From: a@example.nhs.uk\nSubject: " + b"=?utf-8?b?QUJD?= " * 60_000 + b"\n\nhello\n"
    for raw in (plain, encoded):
        msg = survive(raw)
        assert msg.text == "hello\n" and 0 < len(msg.subject) <= 8192


def test_nul_bytes_everywhere():
    raw = b"Fr\x00om: a@example.nhs.uk\nSub\x00ject: hi\x00\n\n\x00body\x00\n"
    msg = survive(raw)
    assert msg.text == "body\n"


def test_zip_bomb_attachment_is_kept_as_bytes_never_unpacked():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb.bin", b"\0" * (64 * 1024 * 1024))  # 64 MB of zeros -> ~64 KB compressed
    bomb = buffer.getvalue()
    raw = (b"From: a@example.nhs.uk\nTo: swig@example.org\nSubject: cv\nMIME-Version: 1.0\n"
           b'Content-Type: multipart/mixed; boundary="z"\n\n--z\nContent-Type: text/plain\n\nMy CV.\n--z\n'
           b'Content-Type: application/zip; name="cv.zip"\nContent-Disposition: attachment; filename="cv.zip"\n'
           b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(bomb) + b"--z--\n")
    tracemalloc.start()
    try:
        msg = survive(raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    (att,) = msg.attachments
    assert att.data == bomb and att.filename == "cv.zip"
    assert peak < 40 * len(raw)  # nowhere near the 64 MB it would expand to


def test_fifty_megabyte_attachment_takes_the_oversize_path_without_decoding():
    head = (b"From: Big Sender <big@example.nhs.uk>\nTo: sdig@example.org\nSubject: big\nMessage-ID: <big@example.nhs.uk>\n"
            b'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\nhi\n'
            b"--b\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n")
    raw = head + b"QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB\n" * 690_000 + b"--b--\n"
    assert len(raw) > 50_000_000
    tracemalloc.start()
    try:
        msg = parse(raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert msg.oversize and msg.attachments == () and msg.text == ""
    assert msg.subject == "big" and msg.size == len(raw)
    assert peak < len(raw) // 10  # headers only: a few MB at most, never a copy of the message
    assert route(msg, GROUPS).groups == ("SDIG",)
