"""The real worker, SIGKILLed at random while it ingests and acknowledges, then restarted:
every message is stored exactly once and every applicant acknowledged exactly once
(a send interrupted mid-conversation is the documented exception: flagged, never resent)."""

from __future__ import annotations

from tests.faults.harness import Chaos


def test_random_kills_lose_and_double_nothing(tmp_path, dovecot, smtp_server) -> None:
    chaos = Chaos(tmp_path, dovecot, smtp_server, per_mailbox=40, seed=11)
    chaos.load()
    result = chaos.run(kills=5, min_gap=0.4, max_gap=1.5)  # one worker, restarted after each kill
    summary = "\n".join(result.lines())
    assert result.kills == 5
    assert result.lost == 0, summary
    assert result.duplicates == 0, summary
    assert result.stored == result.messages == 160, summary
    assert result.duplicate_acks == 0, summary
    assert result.missing_acks == 0, summary
    assert result.acks_sent + result.interrupted >= result.applicants, summary


def test_three_workers_share_one_postgres_database(tmp_path, dovecot, smtp_server, postgres_url) -> None:
    """Several `intake run` processes on one PostgreSQL database: leases keep a mailbox to
    one worker at a time, claims keep an acknowledgement to one sender; one worker is
    killed midway and the others take over its mailboxes."""
    chaos = Chaos(tmp_path, dovecot, smtp_server, per_mailbox=250, seed=5, workers=3, database_url=postgres_url)
    chaos.load()
    result = chaos.run(kills=1, min_gap=2.0, max_gap=3.0, settle_timeout=300, restart=False)
    assert sum(p.poll() is None for p in chaos.procs) == 0  # all stopped at the end
    summary = "\n".join(result.lines())
    assert result.stored == result.messages == 1000, summary
    assert result.lost == 0 and result.duplicates == 0, summary
    assert result.duplicate_acks == 0 and result.missing_acks == 0, summary
