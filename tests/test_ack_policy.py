"""The when-to-reply policy (intake.ack.policy.decide): a pure table, tested as one."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from intake.ack.policy import AckFacts, decide
from intake.domain import Kind

NOW = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.timezone.utc)
OWN = frozenset({"blfi@example.org", "swig@example.org"})


def facts(**changes) -> AckFacts:  # type: ignore[no-untyped-def]
    base = AckFacts(kind=Kind.INTEREST, recipient="jane@example.nhs.uk", own_addresses=OWN, enabled=True,
                    mailbox_enabled=True, received_at=NOW, first_connected_at=None, max_age_hours=72,
                    groups_already_acked=frozenset(), groups=frozenset({"SWIG"}), sent_last_hour=0, max_per_hour=200)
    return dataclasses.replace(base, **changes)


def test_interest_and_withdrawal_are_answered() -> None:
    assert decide(facts()).send and not decide(facts()).hold
    assert decide(facts(kind=Kind.WITHDRAWAL)).send


@pytest.mark.parametrize("kind", [k for k in Kind if k not in (Kind.INTEREST, Kind.WITHDRAWAL)])
def test_no_other_kind_is_ever_answered(kind: Kind) -> None:
    decision = decide(facts(kind=kind))
    assert not decision.send and kind.value in decision.reason


@pytest.mark.parametrize("recipient", [
    "blfi@example.org", "SWIG@example.org",                                   # our own
    "noreply@example.nhs.uk", "no-reply@example.nhs.uk", "NoReply@nhs.net", "no-reply+abc@example.com",
    "do-not-reply@example.nhs.uk", "mailer-daemon@example.nhs.uk", "MAILER-DAEMON@mx.example.com",
    "postmaster@example.nhs.uk", "Postmaster@nhs.net",
    "", "not-an-address", "two@@example.org", "jane@example.nhs.uk\r\nBcc: x@example.org",
])
def test_forbidden_or_invalid_recipients_get_nothing(recipient: str) -> None:
    for kind in (Kind.INTEREST, Kind.WITHDRAWAL):
        assert not decide(facts(kind=kind, recipient=recipient)).send


@pytest.mark.parametrize("recipient", ["replyto@example.nhs.uk", "noreplyjones@example.nhs.uk", "jane.postmaster@example.nhs.uk"])
def test_people_whose_address_merely_contains_a_robot_word_are_answered(recipient: str) -> None:
    # The robot rule matches a whole local part, optionally followed by a tag.
    assert decide(facts(recipient=recipient)).send


def test_switches() -> None:
    assert "ack.enabled" in decide(facts(enabled=False)).reason and not decide(facts(enabled=False)).send
    assert not decide(facts(mailbox_enabled=False)).send


def test_backlog_found_at_first_connection_is_not_acknowledged() -> None:
    connected = NOW
    old = facts(received_at=connected - dt.timedelta(hours=73), first_connected_at=connected)
    edge = facts(received_at=connected - dt.timedelta(hours=72), first_connected_at=connected)
    new = facts(received_at=connected - dt.timedelta(hours=1), first_connected_at=connected)
    assert not decide(old).send and "backlog" in decide(old).reason
    assert decide(edge).send and decide(new).send
    # Unknown first connection (legacy rows): no backlog rule to apply.
    assert decide(facts(received_at=NOW - dt.timedelta(days=30))).send


def test_one_acknowledgement_per_recipient_per_group_per_window() -> None:
    repeat = decide(facts(groups_already_acked=frozenset({"SWIG"})))
    assert not repeat.send and "already acknowledged" in repeat.reason
    # A new group in the same message is still acknowledged, and only it.
    both = decide(facts(groups=frozenset({"SWIG", "SDIG"}), groups_already_acked=frozenset({"SWIG"})))
    assert both.send and both.groups == frozenset({"SDIG"})
    # A withdrawal is confirmed even if the interest was just acknowledged, but only once.
    assert decide(facts(kind=Kind.WITHDRAWAL, groups_already_acked=frozenset({"SWIG"}))).send
    assert not decide(facts(kind=Kind.WITHDRAWAL, withdrawal_confirmed_recently=True)).send


def test_over_the_hourly_cap_replies_are_held_not_dropped() -> None:
    under, at = decide(facts(sent_last_hour=199)), decide(facts(sent_last_hour=200))
    assert under.send and not under.hold
    assert at.send and at.hold and "hourly cap of 200" in at.reason
