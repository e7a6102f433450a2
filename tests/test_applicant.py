"""extract_applicant(): who an expression of interest is about."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from intake.applicant import extract_applicant
from intake.domain import Address, Applicant
from intake.parsing import parse

MAIL = Path(__file__).parent / "mail"


def load(path: str):
    return parse((MAIL / path).read_bytes())


@pytest.mark.parametrize("path, expected", [
    ("interest/plain_to_swig.eml", Applicant("jane.okoro@example.nhs.uk", "Jane Okoro", "Director of Nursing",
                                             "Leeds Teaching Hospitals NHS Trust")),
    ("interest/qp_cc_sbameig.eml", Applicant("a.oyelaran@example.nhs.uk", "Adebayo Oyelaran", "Consultant Anaesthetist",
                                             "Barts Health NHS Trust")),
    ("interest/html_only_to_sdig.eml", Applicant("mark.ellison@example.nhs.uk", "Mark Ellison", "Head of Estates",
                                                 "Sheffield Children's NHS Foundation Trust")),
    ("interest/rfc2047_utf8_name.eml", Applicant("siobhan.nibhriain@example.nhs.uk", "Siobhán Ní Bhriain")),
    ("interest/reply_to_director.eml", Applicant("aisha.rahman@example.nhs.uk", "Dr Aisha Rahman")),
    # PA forwarding for a director (Gmail marker): the director is the applicant
    ("interest/forwarded_gmail_pa.eml", Applicant("chiamaka.okonkwo@example.nhs.uk", "Dr Chiamaka Okonkwo",
                                                  "Medical Director", "Manchester University NHS Foundation Trust")),
    # Outlook FW: with a "From: Reyes, Daniel <...> / Sent:" block
    ("interest/forwarded_outlook.eml", Applicant("daniel.reyes@example.nhs.uk", "Daniel Reyes", "Chief Medical Officer",
                                                 "Royal Cornwall Hospitals NHS Trust")),
    # forwarding an invitation and saying "I would like to join the group myself"
    ("interest/forwarded_invitation_self.eml", Applicant("hannah.brook@example.nhs.uk", "Hannah Brook",
                                                         "Director of Finance", "Leeds Community Healthcare NHS Trust")),
    # an Outlook original-message block under a plain reply is a quote, not a forward
    ("interest/quoted_remove_me_is_interest.eml", Applicant("ian.blake@example.nhs.uk", "Ian Blake")),
    ("interest/signature_black_country.eml", Applicant("paul.denning@example.nhs.uk", "Paul Denning", "Chief Executive",
                                                       "Black Country Healthcare NHS Foundation Trust")),
])
def test_corpus_applicants(path, expected):
    assert extract_applicant(load(path)) == expected


def test_no_valid_address_is_none():
    assert extract_applicant(load("bounce/mailer_daemon_empty_sender.eml")) is None


def test_invalid_reply_to_falls_back_to_from():
    msg = load("interest/plain_to_swig.eml")
    assert msg.reply_to is None  # parse drops an invalid Reply-To, so From is used
    bad = parse((MAIL / "interest/plain_to_swig.eml").read_bytes().replace(b"To: swig", b"Reply-To: not an address\nTo: swig", 1))
    assert bad.reply_to is None and extract_applicant(bad).email == "jane.okoro@example.nhs.uk"


def test_name_from_sign_off_when_there_is_no_display_name():
    msg = dataclasses.replace(load("interest/plain_to_swig.eml"), from_=Address("jane.okoro@example.nhs.uk"))
    applicant = extract_applicant(msg)
    assert (applicant.name, applicant.job_title) == ("Jane Okoro", "Director of Nursing")


def test_directory_style_display_name_is_turned_round():
    msg = dataclasses.replace(load("interest/plain_to_swig.eml"), from_=Address("jane.okoro@example.nhs.uk", "Okoro, Jane"))
    assert extract_applicant(msg).name == "Jane Okoro"


def test_display_name_that_is_an_address_is_not_a_name():
    msg = dataclasses.replace(load("interest/plain_to_swig.eml"),
                              from_=Address("jane.okoro@example.nhs.uk", "jane.okoro@example.nhs.uk"))
    assert extract_applicant(msg).name == "Jane Okoro"  # from the signature instead


def test_signature_ignores_phone_lines_and_links():
    text = ("I'd like to join.\n\nBest wishes,\nTom Reid\nHead of Nursing\nTel: 0113 123 4567\n"
            "www.example.nhs.uk\nHull University Teaching Hospitals NHS Trust\n")
    msg = dataclasses.replace(load("interest/plain_to_swig.eml"), text=text, from_=Address("tom.reid@example.nhs.uk"))
    assert extract_applicant(msg) == Applicant("tom.reid@example.nhs.uk", "Tom Reid", "Head of Nursing",
                                               "Hull University Teaching Hospitals NHS Trust")


def test_apple_forward_marker():
    text = ("For you.\n\nBegin forwarded message:\n\nFrom: Grace Obi <grace.obi@example.nhs.uk>\n"
            "Subject: SWIG\nDate: 2 March 2026\n\nI'd like to join SWIG.\n\nRegards,\nGrace Obi\nChief Nurse\n"
            "Kent Community Health NHS Foundation Trust\n")
    msg = dataclasses.replace(load("interest/plain_to_swig.eml"), text=text, subject="Fwd: SWIG")
    assert extract_applicant(msg) == Applicant("grace.obi@example.nhs.uk", "Grace Obi", "Chief Nurse",
                                               "Kent Community Health NHS Foundation Trust")


def test_forward_of_ones_own_message_keeps_the_sender():
    text = ("---------- Forwarded message ---------\nFrom: Jane Okoro <jane.okoro@example.nhs.uk>\n\nresending\n")
    msg = dataclasses.replace(load("interest/plain_to_swig.eml"), text=text)
    assert extract_applicant(msg).email == "jane.okoro@example.nhs.uk"
