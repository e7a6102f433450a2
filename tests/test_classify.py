"""Classification and routing of the .eml corpus in tests/mail, plus each rule on its own.

EXPECTED is the corpus's answer key: every file under tests/mail must have an entry (a new
file without one fails), and every entry must have a file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from intake.classify import REFERENCE_PATTERN, RULES, ClassifyContext, classify, find_references
from intake.domain import Kind
from intake.groups import load_groups
from intake.parsing import UnparseableMessage, parse
from intake.routing import route
from tests.support.config import REPO

MAIL = Path(__file__).parent / "mail"
GROUPS = load_groups(REPO / "config" / "groups.toml")
CTX = ClassifyContext(
    own_addresses=frozenset({a for g in GROUPS for a in g.addresses} | {"blfi@example.org"}),
    message_id_domain="example.org",
    known_message_ids=frozenset({"ack-000042@example.org"}),
    known_references=frozenset({"BLFI-000123"}),
)

# file -> (kind, groups for interest, else "")
EXPECTED: dict[str, tuple[str, str]] = {
    "interest/plain_to_swig.eml": ("interest", "SWIG"),
    "interest/html_only_to_sdig.eml": ("interest", "SDIG"),
    "interest/qp_cc_sbameig.eml": ("interest", "SBAMEIG"),
    "interest/base64_delivered_to_slgbtig.eml": ("interest", "SLGBTIG"),
    "interest/x_original_to_swig.eml": ("interest", "SWIG"),
    "interest/plus_address_sdig.eml": ("interest", "SDIG"),
    "interest/plus_tag_only_sbameig.eml": ("interest", "SBAMEIG"),
    "interest/rfc2047_utf8_name.eml": ("interest", "SLGBTIG"),
    "interest/rfc2047_latin1_name.eml": ("interest", "SWIG"),
    "interest/forwarded_gmail_pa.eml": ("interest", "SBAMEIG"),
    "interest/forwarded_outlook.eml": ("interest", "SDIG"),
    "interest/forwarded_invitation_self.eml": ("interest", "SWIG"),
    "interest/two_groups.eml": ("interest", "SWIG SDIG"),
    "interest/keyword_lgbtq.eml": ("interest", "SLGBTIG"),
    "interest/keyword_bame.eml": ("interest", "SBAMEIG"),
    "interest/keyword_ethnic_minority.eml": ("interest", "SBAMEIG"),
    "interest/keyword_disabled.eml": ("interest", "SDIG"),
    "interest/keyword_womens_group.eml": ("interest", "SWIG"),
    "interest/keyword_with_black_country_signature.eml": ("interest", "SWIG"),
    "interest/name_senior_women.eml": ("interest", "SWIG"),
    "interest/misprint_slgby.eml": ("interest", "SLGBTIG"),
    "interest/code_slgbtig_plain.eml": ("interest", "SLGBTIG"),
    "interest/ambiguous_triage.eml": ("interest", "TRIAGE"),
    "interest/conflicting_keywords_triage.eml": ("interest", "TRIAGE"),
    "interest/reply_to_director.eml": ("interest", "SWIG"),
    "interest/text_part_with_filename.eml": ("interest", "SDIG"),
    "interest/eight_bit_headers.eml": ("interest", "SBAMEIG"),
    "interest/lying_charset.eml": ("interest", "SWIG"),
    "interest/broken_boundary.eml": ("interest", "SLGBTIG"),
    "interest/signature_black_country.eml": ("interest", "SWIG"),
    "interest/with_cv_attachment.eml": ("interest", "SBAMEIG"),
    "interest/quoted_reply_names_other.eml": ("interest", "SDIG"),
    "interest/quoted_remove_me_is_interest.eml": ("interest", "SWIG"),
    "interest/crlf_in_encoded_name.eml": ("interest", "SDIG"),
    "follow_up/in_reply_to_ack.eml": ("follow_up", ""),
    "follow_up/subject_reference.eml": ("follow_up", ""),
    "follow_up/references_chain.eml": ("follow_up", ""),
    "follow_up/no_longer_able_to_attend.eml": ("follow_up", ""),
    "withdrawal/please_remove_me.eml": ("withdrawal", ""),
    "withdrawal/withdraw_subject.eml": ("withdrawal", ""),
    "withdrawal/no_longer_interested.eml": ("withdrawal", ""),
    "auto_reply/outlook_ooo.eml": ("auto_reply", ""),
    "auto_reply/rfc3834_empty_return_path.eml": ("auto_reply", ""),
    "auto_reply/abwesenheitsnotiz.eml": ("auto_reply", ""),
    "auto_reply/read_receipt.eml": ("auto_reply", ""),
    "auto_reply/x_autoreply.eml": ("auto_reply", ""),
    "auto_reply/auto_colon_subject.eml": ("auto_reply", ""),
    "auto_reply/precedence_bulk.eml": ("auto_reply", ""),
    "bounce/postfix_dsn.eml": ("bounce", ""),
    "bounce/exchange_ndr.eml": ("bounce", ""),
    "bounce/gmail_dsn.eml": ("bounce", ""),
    "bounce/mailer_daemon_empty_sender.eml": ("bounce", ""),
    "list/list_id.eml": ("list", ""),
    "list/list_unsubscribe_only.eml": ("list", ""),
    "list/precedence_list.eml": ("list", ""),
    "own_mail/from_own_address.eml": ("own_mail", ""),
    "own_mail/loop_header.eml": ("own_mail", ""),
    "spam/x_spam_flag.eml": ("spam", ""),
    "spam/x_spam_status.eml": ("spam", ""),
    "hostile/empty.eml": ("unparseable", ""),
    "hostile/garbage_blob.eml": ("unparseable", ""),
    "hostile/nul_bytes.eml": ("interest", "SWIG"),
    "hostile/headers_only.eml": ("interest", "TRIAGE"),
    "hostile/bad_date_and_ids.eml": ("interest", "SBAMEIG"),
    "hostile/nested_100_deep.eml": ("interest", "SDIG"),
}


def corpus() -> list[str]:
    return sorted(str(p.relative_to(MAIL)) for p in MAIL.rglob("*.eml"))


def test_every_corpus_file_has_an_expectation_and_every_expectation_a_file():
    files = corpus()
    assert len(files) >= 40
    assert sorted(set(files) - set(EXPECTED)) == [], "add these files to EXPECTED"
    assert sorted(set(EXPECTED) - set(files)) == [], "these expected files are missing"


def test_each_kind_folder_holds_its_kind():
    for path, (kind, _) in EXPECTED.items():
        folder = path.split("/")[0]
        assert folder == "hostile" or folder == kind, path


@pytest.mark.parametrize("path", sorted(EXPECTED))
def test_corpus_file_is_classified_and_routed_as_expected(path: str):
    kind, groups = EXPECTED[path]
    data = (MAIL / path).read_bytes()
    if kind == "unparseable":
        with pytest.raises(UnparseableMessage):
            parse(data)
        return
    msg = parse(data)
    verdict = classify(msg, CTX)
    assert verdict.kind.value == kind, (path, verdict)
    assert verdict.reason and verdict.rule
    if kind == "interest":
        routed = route(msg, GROUPS)
        assert routed.groups == tuple(groups.split()), (path, routed)
        assert routed.reason


# -- the table and the engine -------------------------------------------------------------

def test_rules_table_is_the_documented_policy_order():
    assert [r.name for r in RULES] == ["own_mail", "bounce", "auto_reply", "list", "spam", "withdrawal", "follow_up"]
    for rule in RULES:
        assert rule.description and "\n" not in rule.description
        assert callable(rule.check)


def msg_of(path: str):
    return parse((MAIL / path).read_bytes())


def test_a_plain_human_message_is_interest_by_default():
    verdict = classify(msg_of("interest/plain_to_swig.eml"), CTX)
    assert (verdict.kind, verdict.rule) == (Kind.INTEREST, "default")


def test_own_mail_wins_over_everything_else():
    msg = msg_of("own_mail/loop_header.eml")
    msg = dataclasses.replace(msg, headers=msg.headers + (("X-Spam-Flag", "YES"), ("List-Id", "x")))
    assert classify(msg, CTX).kind is Kind.OWN_MAIL


def test_loop_header_name_comes_from_the_context():
    msg = msg_of("own_mail/loop_header.eml")
    other = dataclasses.replace(CTX, loop_header="X-Other-Loop")
    assert classify(msg, other).kind is not Kind.OWN_MAIL


def test_a_bounce_quoting_our_loop_header_inside_is_a_bounce_not_own_mail():
    # the Postfix DSN carries X-Intake-Loop only in its text/rfc822-headers part
    msg = msg_of("bounce/postfix_dsn.eml")
    assert classify(msg, CTX).kind is Kind.BOUNCE
    assert any(b"ack-000042@example.org" in a.data for a in msg.attachments)


def test_auto_reply_with_empty_return_path_is_not_a_bounce():
    verdict = classify(msg_of("auto_reply/rfc3834_empty_return_path.eml"), CTX)
    assert verdict.kind is Kind.AUTO_REPLY and verdict.reason == "Auto-Submitted: auto-replied"


def test_auto_submitted_no_is_a_human():
    msg = msg_of("interest/plain_to_swig.eml")
    msg = dataclasses.replace(msg, headers=msg.headers + (("Auto-Submitted", "no"),))
    assert classify(msg, CTX).kind is Kind.INTEREST


def test_follow_up_needs_a_known_thread():
    msg = msg_of("follow_up/in_reply_to_ack.eml")
    assert classify(msg, dataclasses.replace(CTX, known_message_ids=frozenset())).kind is Kind.INTEREST
    verdict = classify(msg, CTX)
    assert verdict.related_message_ids == ("ack-000042@example.org",)


def test_reference_in_subject_counts_only_when_it_exists():
    msg = msg_of("follow_up/subject_reference.eml")
    assert classify(msg, dataclasses.replace(CTX, known_references=frozenset())).kind is Kind.INTEREST
    assert "BLFI-000123" in classify(msg, CTX).reason


def test_withdrawal_in_quoted_text_is_ignored_but_in_own_words_counts():
    assert classify(msg_of("interest/quoted_remove_me_is_interest.eml"), CTX).kind is Kind.INTEREST
    verdict = classify(msg_of("withdrawal/please_remove_me.eml"), CTX)
    assert verdict.kind is Kind.WITHDRAWAL and "please remove me" in verdict.reason


def test_withdrawal_beats_follow_up():
    # please_remove_me.eml replies to our acknowledgement: the follow-up rule alone would claim it
    from intake.classify.rules import follow_up

    msg = msg_of("withdrawal/please_remove_me.eml")
    assert follow_up.check(msg, CTX) is not None
    assert classify(msg, CTX).kind is Kind.WITHDRAWAL


def test_find_references():
    assert find_references("Re: [BLFI-000123] and blfi-000124, BLFI-000123 again") == ("BLFI-000123", "BLFI-000124")
    assert find_references("XBLFI-000123 BLFI-12") == ()
    assert REFERENCE_PATTERN.search("[BLFI-000123]")
    assert find_references("") == ()
