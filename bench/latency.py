"""Latency benchmark: with the worker running, mail arrives one message at a time and we
time how long until its acknowledgement reaches the SMTP server.

    .venv/bin/python bench/latency.py [--n 100] [--mode idle|poll] [--poll-interval 5]

Mail is delivered into the mailbox with IMAP APPEND (what an MTA's delivery looks like to an
IMAP client). Prints p50, p95 and max in seconds.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.servers.dovecot import Dovecot  # noqa: E402
from tests.servers.smtp import SmtpServer  # noqa: E402
from tests.support.config import MailboxSpec, write_config  # noqa: E402
from tests.support.mail import make_mail  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--mode", choices=("idle", "poll"), default="idle")
    parser.add_argument("--poll-interval", type=int, default=5)
    args = parser.parse_args()
    dovecot, smtp = Dovecot().start(), SmtpServer().start()
    proc = None
    try:
        with tempfile.TemporaryDirectory(prefix="latency") as work:
            user = dovecot.add_user(f"swig-latency-{os.getpid()}@example.org", "pw")
            config = write_config(Path(work), mailboxes=[MailboxSpec("swig", user, "pw", port=dovecot.port, group="SWIG",
                                                                     extra={"idle": args.mode == "idle"})],
                                  smtp_port=smtp.port, sections={
                                      "worker": {"poll_interval": args.poll_interval, "jitter": 0, "delivery_interval": 60},
                                      "ack": {"enabled": True, "max_per_hour": 100000}})
            log = open(Path(work) / "worker.log", "wb")
            proc = subprocess.Popen([sys.executable, "-m", "intake", "--config", str(config), "run", "--no-web"],
                                    stdout=log, stderr=log)
            time.sleep(3)  # start-up, first poll
            latencies = []
            for i in range(args.n):
                before = len(smtp.messages)
                sent = time.perf_counter()
                dovecot.append(user, "INBOX", make_mail(from_=f"L{i} <lat{i}@example.nhs.uk>", to=user))
                deadline = sent + args.poll_interval + 30
                while len(smtp.messages) == before and time.perf_counter() < deadline:
                    time.sleep(0.005)
                latencies.append(time.perf_counter() - sent if len(smtp.messages) > before else float("inf"))
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        smtp.stop()
        dovecot.cleanup()
    ordered = sorted(latencies)
    p = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    print(f"latency ({args.mode}{'' if args.mode == 'idle' else f', poll every {args.poll_interval}s'}), "
          f"{args.n} messages, arrival to acknowledgement accepted by SMTP:")
    print(f"  p50 {p(0.5):.2f} s, p95 {p(0.95):.2f} s, max {ordered[-1]:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
