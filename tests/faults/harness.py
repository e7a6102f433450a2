"""A fault harness: the real worker as a subprocess, killed and restarted at random.

Shared by tests/faults (short runs in `make test`) and bench/chaos.py (long runs).
It loads mail into real Dovecot mailboxes, runs `intake run --no-web` as a child process,
SIGKILLs it at random moments, restarts it, and finally lets it finish. Then it counts:
messages stored (and stored twice), acknowledgements the SMTP server accepted (and twice),
and anything lost.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from tests.support.config import MailboxSpec, write_config
from tests.support.mail import make_mail

GROUPS = ("SWIG", "SDIG", "SBAMEIG", "SLGBTIG")


@dataclass
class ChaosResult:
    kills: int = 0
    messages: int = 0
    stored: int = 0
    duplicates: int = 0
    lost: int = 0
    applicants: int = 0
    acks_sent: int = 0
    duplicate_acks: int = 0
    missing_acks: int = 0
    interrupted: int = 0
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [f"kills survived: {self.kills}", f"messages: {self.messages}", f"stored: {self.stored}",
                f"duplicates: {self.duplicates}", f"lost: {self.lost}", f"eligible applicants: {self.applicants}",
                f"acks sent: {self.acks_sent}", f"duplicate acks: {self.duplicate_acks}",
                f"missing acks: {self.missing_acks}", f"interrupted sends (documented window): {self.interrupted}"] + self.notes


class Chaos:
    def __init__(self, workdir: Path, dovecot, smtp_server, *, per_mailbox: int, seed: int = 1,  # type: ignore[no-untyped-def]
                 workers: int = 1, database_url: str | None = None):
        self.workdir, self.dovecot, self.smtp = workdir, dovecot, smtp_server
        self.rng = random.Random(seed)
        self.per_mailbox = per_mailbox
        tag = f"{os.getpid()}-{seed}-{int(time.time() * 1000) % 10**7}"
        self.users = {code: f"{code.lower()}-chaos-{tag}@example.org" for code in GROUPS}
        boxes = []
        for code, user in self.users.items():
            dovecot.add_user(user, "pw")
            boxes.append(MailboxSpec(code.lower(), user, "pw", port=dovecot.port, group=code, extra={"idle": False}))
        self.config = write_config(workdir, mailboxes=boxes, smtp_port=smtp_server.port, database_url=database_url, sections={
            "worker": {"poll_interval": 1, "jitter": 0, "batch_size": 25, "delivery_interval": 1, "lease_seconds": 5},
            "ack": {"enabled": True, "max_per_hour": 100000},
        })
        from intake.config import load_settings
        from intake.db import make_engine, upgrade

        url = load_settings(self.config, env={})["database.url"]
        upgrade(url)
        self.engine = make_engine(url)
        self.workers = workers
        self.expected_ids: set[str] = set()
        self.procs: list[subprocess.Popen] = []

    def load(self) -> None:
        for code, user in self.users.items():
            mails = []
            for i in range(self.per_mailbox):
                mid = f"chaos-{code}-{i}-{self.rng.random():.8f}@example.nhs.uk"
                self.expected_ids.add(mid)
                mails.append(make_mail(from_=f"Person {code} {i} <p{i}.{code.lower()}@example.nhs.uk>", to=user,
                                       message_id=f"<{mid}>"))
            self.dovecot.append_many(user, "INBOX", mails)

    def start_one(self) -> subprocess.Popen:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        log = open(self.workdir / "worker.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "intake", "--config", str(self.config), "run", "--no-web"],
                                stdout=log, stderr=log, env=env)
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        for _ in range(self.workers - len([p for p in self.procs if p.poll() is None])):
            self.start_one()

    def kill(self) -> None:
        """SIGKILL one running worker, chosen at random."""
        alive = [p for p in self.procs if p.poll() is None]
        victim = self.rng.choice(alive)
        victim.send_signal(signal.SIGKILL)
        victim.wait()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def run(self, kills: int, *, min_gap: float = 0.3, max_gap: float = 2.0, settle_timeout: float = 240,
            restart: bool = True) -> ChaosResult:
        """Kill a worker `kills` times; with restart=False the survivors must finish the work."""
        result = ChaosResult(messages=len(self.expected_ids))
        self.start()
        for _ in range(kills):
            time.sleep(self.rng.uniform(min_gap, max_gap))
            self.kill()
            result.kills += 1
            if restart:
                self.start()
        self._wait_until_done(settle_timeout)
        self.stop()
        return self._count(result)

    def _stored_count(self) -> int:
        try:
            with self.engine.connect() as conn:
                stored = conn.execute(text("select count(*) from messages")).scalar_one()
                pending = conn.execute(text("select count(*) from outbox where status in ('pending', 'sending')")).scalar_one()
            return stored if pending == 0 else -1
        except SQLAlchemyError:
            return -1

    def _wait_until_done(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._stored_count() >= len(self.expected_ids):
                time.sleep(1.5)  # one more delivery round
                if self._stored_count() >= len(self.expected_ids):
                    return
            time.sleep(0.3)

    def _count(self, result: ChaosResult) -> ChaosResult:
        with self.engine.connect() as conn:
            ids = [r[0] for r in conn.execute(text("select message_id from messages"))]
            emails = [r[0] for r in conn.execute(text("select distinct email from applications where email is not null"))]
            interrupted = [r[0] for r in conn.execute(text(
                "select to_address from outbox where status = 'failed' and last_error like 'interrupted%'"))]
        counts = Counter(ids)
        result.stored = len(set(ids) & self.expected_ids)
        result.duplicates = sum(n - 1 for n in counts.values() if n > 1)
        result.lost = len(self.expected_ids - set(ids))
        result.applicants = len(emails)
        acked = Counter()
        for received in self.smtp.messages:
            msg = message_from_bytes(received.data)
            if str(msg.get("Auto-Submitted", "")) == "auto-replied":
                for rcpt in received.rcpt_tos:
                    acked[rcpt.lower()] += 1
        result.acks_sent = sum(acked.values())
        result.duplicate_acks = sum(n - 1 for n in acked.values() if n > 1)
        result.interrupted = len(interrupted)
        missing = [e for e in emails if acked[e] == 0 and e not in interrupted]
        result.missing_acks = len(missing)
        if result.duplicate_acks:
            result.notes.append("duplicate acks to: " + ", ".join(e for e, n in acked.items() if n > 1)[:500])
        return result
