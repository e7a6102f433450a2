"""parse(): raw bytes -> InboundMessage, on the corpus and on the known mail-parser hazards."""

from __future__ import annotations

import datetime as dt
import random
from email.message import EmailMessage
from pathlib import Path

import pytest

from intake.domain import Address
from intake.errors import IntakeError
from intake.parsing import UnparseableMessage, decode_text, parse

MAIL = Path(__file__).parent / "mail"


def load(path: str):
    return parse((MAIL / path).read_bytes())


def test_plain_message_fills_every_field():
    msg = load("interest/plain_to_swig.eml")
    assert msg.message_id == "CAF1a2b3c4@mail.example.nhs.uk"
    assert msg.subject == "Expression of interest"
    assert msg.from_ == Address("jane.okoro@example.nhs.uk", "Jane Okoro")
    assert msg.reply_to is None
    assert msg.to == (Address("swig@example.org"),)
    assert msg.cc == ()
    assert msg.delivered_to == ("swig@example.org",)
    assert msg.date == dt.datetime(2026, 3, 3, 9, 14, 27, tzinfo=dt.timezone.utc)
    assert msg.in_reply_to == "" and msg.references == ()
    assert msg.headers[0] == ("Return-Path", "<jane.okoro@example.nhs.uk>")
    assert "women's leadership programme" in msg.text and msg.html == ""
    assert msg.content_type == "text/plain" and msg.size == len((MAIL / "interest/plain_to_swig.eml").read_bytes())
    assert not msg.oversize and msg.attachments == ()


def test_html_only_keeps_html_and_no_text():
    msg = load("interest/html_only_to_sdig.eml")
    assert msg.text == "" and "<b>express my interest</b>" in msg.html
    assert "express my interest" in msg.body


def test_quoted_printable_and_base64_bodies_are_decoded():
    assert "I’d like to register my interest" in load("interest/qp_cc_sbameig.eml").text
    assert "I am an out gay man" in load("interest/base64_delivered_to_slgbtig.eml").text


def test_delivered_to_and_x_original_to_are_recipients():
    msg = load("interest/x_original_to_swig.eml")
    assert msg.delivered_to == ("programme-team@example.org", "swig@example.org")
    assert "swig@example.org" in msg.recipients


def test_rfc2047_names_in_utf8_and_latin1():
    assert load("interest/rfc2047_utf8_name.eml").from_.name == "Siobhán Ní Bhriain"
    assert load("interest/rfc2047_utf8_name.eml").subject == "Expression of interest – SLGBT+IG"
    msg = load("interest/rfc2047_latin1_name.eml")
    assert (msg.from_.name, msg.subject) == ("Renée Müller", "Intérêt")
    assert "Café chats" in msg.text


def test_raw_8bit_headers_are_read_as_utf8():
    msg = load("interest/eight_bit_headers.eml")
    assert msg.from_.name == "Zoë Adeyemi-Brontë"
    assert msg.subject == "Intérêt – groupe"


def test_encoded_crlf_cannot_inject_headers_or_change_the_address():
    msg = load("interest/crlf_in_encoded_name.eml")
    assert msg.from_.email == "eve.marsh@example.nhs.uk"
    assert "\r" not in msg.from_.name and "\n" not in msg.from_.name
    assert msg.subject == "Interest X-Spam-Flag: NO"
    assert not msg.has_header("Bcc") and msg.header("X-Spam-Flag") == ""
    assert all("\n" not in v and "\r" not in v for _, v in msg.headers)


def test_charset_that_lies_is_read_as_utf8_then_cp1252():
    msg = load("interest/lying_charset.eml")
    assert "Señora García sent me" in msg.text and "José" in msg.text
    assert msg.subject == "Interés"


def test_text_part_with_a_file_name_is_still_the_body():
    msg = load("interest/text_part_with_filename.eml")
    assert "I am autistic and a senior HR lead" in msg.text


def test_broken_boundary_is_repaired():
    msg = load("interest/broken_boundary.eml")
    assert msg.text.startswith("Hello, I am a lesbian senior leader")
    assert "Content-Type" not in msg.text
    assert "MIME boundary repaired" in msg.defects


def test_unrepairable_multipart_keeps_its_raw_text():
    raw = (b"From: a.person@example.nhs.uk\nSubject: x\nContent-Type: multipart/mixed; boundary=nowhere\n\n"
           b"I would like to join, there are no parts here.\n")
    msg = parse(raw)
    assert "I would like to join" in msg.text


def test_attachments_keep_their_bytes_and_name():
    msg = load("interest/with_cv_attachment.eml")
    (cv,) = msg.attachments
    assert (cv.filename, cv.content_type) == ("Nadia Hussain CV.pdf", "application/pdf")
    assert cv.data.startswith(b"%PDF-1.4")
    assert msg.text.startswith("Please find my CV attached.") and "<p>" in msg.html


def test_mailer_daemon_with_empty_address_has_no_sender_but_keeps_the_header():
    msg = load("bounce/mailer_daemon_empty_sender.eml")
    assert msg.from_ is None
    assert msg.header("From") == "MAILER-DAEMON <>"


def test_dsn_keeps_the_returned_headers_as_an_attachment():
    msg = load("bounce/exchange_ndr.eml")
    parts = {a.content_type: a.data for a in msg.attachments}
    assert b"<ack-000043@example.org>" in parts["text/rfc822-headers"]
    assert b"Action: failed" in parts["message/delivery-status"]
    assert msg.content_type == "multipart/report"


def test_dsn_keeps_the_returned_original_message():
    msg = load("bounce/gmail_dsn.eml")
    (original,) = [a for a in msg.attachments if a.content_type == "message/rfc822"]
    assert b"Message-ID: <ack-000044@example.org>" in original.data


def test_read_receipt_keeps_its_report():
    msg = load("auto_reply/read_receipt.eml")
    (mdn,) = [a for a in msg.attachments if a.content_type == "message/disposition-notification"]
    assert b"Original-Message-ID: <ack-000042@example.org>" in mdn.data


def test_threading_headers():
    msg = load("follow_up/in_reply_to_ack.eml")
    assert msg.in_reply_to == "ack-000042@example.org"
    assert msg.references == ("CAF1a2b3c4@mail.example.nhs.uk", "ack-000042@example.org")


def test_bad_date_ids_and_charset_are_best_effort():
    msg = load("hostile/bad_date_and_ids.eml")
    assert msg.date is None
    assert msg.message_id == "no-angle-brackets-here"
    assert msg.in_reply_to == ""
    assert msg.references == ("ok@example.nhs.uk",)
    assert msg.from_.email == "odd.dates@example.nhs.uk"


def test_date_without_zone_is_made_aware():
    msg = parse(b"From: a@example.org\nDate: 3 Mar 2026 09:00:00\n\nhi\n")
    assert msg.date is not None and msg.date.tzinfo is not None


def test_nul_bytes_are_removed():
    msg = load("hostile/nul_bytes.eml")
    assert msg.subject == "Interest" and msg.text == "I would like to join.\n"


def test_headers_only_message():
    msg = load("hostile/headers_only.eml")
    assert (msg.subject, msg.text, msg.html) == ("(no body)", "", "")


@pytest.mark.parametrize("raw", [b"", b"   \r\n\r\n  ", (MAIL / "hostile/garbage_blob.eml").read_bytes()])
def test_nothing_usable_raises_unparseable_with_a_reason(raw: bytes):
    with pytest.raises(UnparseableMessage) as info:
        parse(raw)
    assert info.value.reason
    assert isinstance(info.value, IntakeError)


def test_oversize_keeps_headers_only():
    msg = EmailMessage()
    msg["From"] = "Big Sender <big.sender@example.nhs.uk>"
    msg["To"] = "swig@example.org"
    msg["Subject"] = "CV attached"
    msg["Message-ID"] = "<big-1@example.nhs.uk>"
    msg.set_content("Please see my CV.")
    msg.add_attachment(b"x" * 200_000, maintype="application", subtype="pdf", filename="cv.pdf")
    raw = msg.as_bytes()
    parsed = parse(raw, max_bytes=100_000)
    assert parsed.oversize and parsed.size == len(raw)
    assert (parsed.text, parsed.html, parsed.attachments) == ("", "", ())
    assert parsed.subject == "CV attached" and parsed.from_.email == "big.sender@example.nhs.uk"
    assert parsed.message_id == "big-1@example.nhs.uk"
    assert any(d.startswith("oversize") for d in parsed.defects)
    assert not parse(raw).oversize


def test_a_parser_crash_falls_back_to_headers(monkeypatch):
    # A fault no real message reliably produces: mail-parser and the body walk blowing up.
    import intake.parsing as parsing

    def boom(*args, **kwargs):
        raise RecursionError("simulated")

    monkeypatch.setattr(parsing, "_bodies", boom)
    msg = parse((MAIL / "interest/plain_to_swig.eml").read_bytes())
    assert msg.subject == "Expression of interest" and msg.text == ""
    assert msg.defects == ("parser failed: RecursionError",)


@pytest.mark.parametrize("payload, label, expected", [
    ("café".encode("utf-8"), "us-ascii", "café"),
    ("café".encode("utf-8"), "iso-8859-1", "café"),
    ("café".encode("cp1252"), "utf-8", "café"),
    ("“quoted”".encode("cp1252"), None, "“quoted”"),
    ("Привет".encode("koi8-r"), "koi8-r", "Привет"),
    (b"caf\xe9", "x-unknown-charset", "café"),
])
def test_decode_text(payload: bytes, label: str | None, expected: str):
    assert decode_text(payload, label) == expected


def test_a_long_base64_attachment_is_set_aside_and_read_back_exactly() -> None:
    """Long base64 bodies skip the feed parser's line lists; the parsed tree is the same."""
    from intake import parsing

    blob = random.Random(3).randbytes(1_500_000)
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "A <a@example.nhs.uk>", "swig@example.org", "Interest"
    msg.set_content("Hello,\n\nMy CV is attached.\n")
    msg.add_attachment(blob, maintype="application", subtype="pdf", filename="cv.pdf")
    msg.add_attachment(blob[:700_000], maintype="application", subtype="octet-stream", filename="two.bin")
    for data in (msg.as_bytes(), msg.as_bytes().replace(b"\n", b"\r\n")):
        slim, blocks = parsing._set_aside_base64(data)
        assert len(blocks) == 2 and len(slim) < 10_000
        assert parsing._message_from_bytes(data).as_bytes() == parsing._feed(data).as_bytes()
        parsed = parsing.parse(data)
        assert [(a.filename, a.data) for a in parsed.attachments] == [("cv.pdf", blob), ("two.bin", blob[:700_000])]
        assert "My CV is attached." in parsed.text


def test_address_caches_keep_short_header_values_only() -> None:
    """Parsed addresses are remembered for recurring short values (group addresses, an
    applicant's From); a hostile 10,000-address To is parsed but never kept."""
    from intake import addresses, parsing

    many = ", ".join(f"user{i}@example.org" for i in range(10_000))
    parsing._addresses_cached.cache_clear()
    addresses._parse_address_cached.cache_clear()
    before = (0, 0)
    assert len(parsing._addresses([many])) == 10_000
    assert addresses.parse_address("x" * 600 + " <a@example.org>").email == "a@example.org"
    assert (parsing._addresses_cached.cache_info().currsize,
            addresses._parse_address_cached.cache_info().currsize) == before
    assert parsing._addresses(["Ann <ann.cache.test@example.org>"])[0].name == "Ann"
    assert parsing._addresses_cached.cache_info().currsize == before[0] + 1
