"""route(): which queue(s) an expression of interest lands in, and why."""

from __future__ import annotations

import dataclasses

import pytest

from intake.domain import TRIAGE, Address, InboundMessage
from intake.groups import load_groups
from intake.routing import route
from tests.support.config import REPO

GROUPS = load_groups(REPO / "config" / "groups.toml")


def message(*, to: str = "blfi@example.org", cc: str = "", delivered: tuple[str, ...] = (), subject: str = "Interest",
            text: str = "", html: str = "") -> InboundMessage:
    return InboundMessage(
        message_id="m@example.nhs.uk", subject=subject, from_=Address("a.person@example.nhs.uk", "A Person"),
        reply_to=None, to=(Address(to),) if to else (), cc=(Address(cc),) if cc else (), delivered_to=delivered,
        date=None, in_reply_to="", references=(), headers=(), text=text, html=html)


@pytest.mark.parametrize("kwargs, code", [
    (dict(to="swig@example.org"), "SWIG"),
    (dict(cc="sdig@example.org"), "SDIG"),
    (dict(to="", delivered=("sbameig@example.org",)), "SBAMEIG"),
    (dict(to="blfi+slgbtig@example.org"), "SLGBTIG"),
    (dict(to="anything+sdig@example.org"), "SDIG"),       # a plus tag equal to a code counts on any address
    (dict(to="blfi+slgbt+ig@example.org"), "SLGBTIG"),   # letters only: the display form as a tag
    (dict(to="SWIG@Example.org".lower()), "SWIG"),
])
def test_recipient_paths(kwargs, code):
    routed = route(message(**kwargs), GROUPS)
    assert routed.groups == (code,)
    assert routed.evidence == (f"address:{code}",)
    assert code in routed.reason


def test_unknown_plus_tag_is_not_evidence():
    assert route(message(to="blfi+hello@example.org"), GROUPS).groups == (TRIAGE,)


def test_mailbox_default_group_when_no_recipient_matches():
    routed = route(message(to="programme-team@example.org"), GROUPS, mailbox_group="SDIG")
    assert routed.groups == ("SDIG",) and routed.evidence == ("mailbox:SDIG",)


def test_recipient_beats_the_mailbox_default():
    assert route(message(to="swig@example.org"), GROUPS, mailbox_group="SDIG").groups == ("SWIG",)


@pytest.mark.parametrize("words, code", [
    ("SLGBT+IG", "SLGBTIG"), ("SLGBTIG", "SLGBTIG"), ("the SLGBY+IG", "SLGBTIG"), ("slgbt+ig", "SLGBTIG"),
    ("Senior Women Influencers Group", "SWIG"), ("SWIG", "SWIG"), ("senior disability influencers group", "SDIG"),
    ("SBAMEIG", "SBAMEIG"), ("Senior BAME Influencers Group", "SBAMEIG"),
])
def test_codes_and_names_are_strong(words, code):
    routed = route(message(text=f"Hello, I would like to join {words}, please."), GROUPS)
    assert routed.groups == (code,) and routed.evidence == (f"named:{code}",)


@pytest.mark.parametrize("words, code", [
    ("LGBTQ+", "SLGBTIG"), ("BAME", "SBAMEIG"), ("ethnic minority", "SBAMEIG"), ("disabled", "SDIG"),
    ("women's group", "SWIG"), ("lgbt", "SLGBTIG"),
])
def test_keywords_for_one_group_route_there_and_say_so(words, code):
    routed = route(message(text=f"I am interested; {words} leaders matter."), GROUPS)
    assert routed.groups == (code,)
    assert routed.reason.startswith(f"keywords point to {code} only")


def test_conflicting_keywords_go_to_triage_with_the_words():
    routed = route(message(text="I am a disabled woman in a senior role."), GROUPS)
    assert routed.groups == (TRIAGE,)
    assert "conflicting keywords" in routed.reason and "disabled" in routed.reason and "woman" in routed.reason


def test_nothing_named_goes_to_triage():
    routed = route(message(text="Which group suits me?"), GROUPS)
    assert routed.groups == (TRIAGE,) and routed.reason == "no group named and no group address"


def test_word_boundaries():
    # "transformation", "swigging", "blackpool", "disabledaccess" are not keywords
    routed = route(message(text="I lead transformation in Blackpool; no swigging; disabledaccess."), GROUPS)
    assert routed.groups == (TRIAGE,)


def test_two_strong_names_route_to_both_in_configured_order():
    routed = route(message(text="I would like to join SDIG and also SWIG."), GROUPS)
    assert routed.groups == ("SWIG", "SDIG")


def test_recipient_plus_strongly_named_other_group_routes_to_both():
    routed = route(message(to="swig@example.org", text="Please also add me to SDIG."), GROUPS)
    assert routed.groups == ("SWIG", "SDIG")
    assert "also names SDIG" in routed.reason


def test_recipient_plus_keywords_for_another_group_stays_with_the_recipient():
    routed = route(message(to="swig@example.org", text="I am disabled."), GROUPS)
    assert routed.groups == ("SWIG",)


def test_quoted_text_and_signature_are_not_evidence():
    text = ("I'd like to join, please.\n\nKind regards,\nA Person\nBlack Country Healthcare NHS Foundation Trust\n\n"
            "On Mon, Comms wrote:\n> SWIG and SDIG are recruiting\n")
    assert route(message(text=text), GROUPS).groups == (TRIAGE,)


def test_subject_counts():
    assert route(message(subject="SLGBT+IG membership"), GROUPS).groups == ("SLGBTIG",)


def test_html_only_body_is_read_as_text():
    routed = route(message(html="<p>I&#39;d like to join the <b>SBAMEIG</b>.</p><style>.swig{}</style>"), GROUPS)
    assert routed.groups == ("SBAMEIG",)


def test_route_always_returns_at_least_one_group_even_with_no_groups():
    assert route(message(text="SWIG"), ()).groups == (TRIAGE,)


def test_router_is_built_once_per_groups_tuple():
    from intake.routing import _router

    _router.cache_clear()
    for _ in range(50):
        route(message(), GROUPS)
    assert _router.cache_info().misses == 1 and _router.cache_info().hits == 49


def test_changed_groups_take_effect():
    renamed = tuple(dataclasses.replace(g, keywords=("nursing",)) if g.code == "SWIG" else g for g in GROUPS)
    assert route(message(text="I am in nursing."), renamed).groups == ("SWIG",)
