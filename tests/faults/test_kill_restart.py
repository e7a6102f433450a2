"""The real worker, SIGKILLed at random while it ingests and acknowledges, then restarted:
every message is stored exactly once and every applicant acknowledged exactly once
(a send interrupted mid-conversation is the documented exception: flagged, never resent)."""

from __future__ import annotations

from tests.faults.harness import Chaos


def test_random_kills_lose_and_double_nothing(tmp_path, dovecot, smtp_server) -> None:
    chaos = Chaos(tmp_path, dovecot, smtp_server, per_mailbox=40, seed=11)
    chaos.load()
    result = chaos.run(kills=5, min_gap=0.4, max_gap=1.5)
    summary = "\n".join(result.lines())
    assert result.kills == 5
    assert result.lost == 0, summary
    assert result.duplicates == 0, summary
    assert result.stored == result.messages == 160, summary
    assert result.duplicate_acks == 0, summary
    assert result.missing_acks == 0, summary
    assert result.acks_sent + result.interrupted >= result.applicants, summary
