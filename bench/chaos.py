"""Long fault run: the real worker SIGKILLed at random (20+ times) while it ingests and
acknowledges mail across four mailboxes, then counted. Prints the figures for the README.

    .venv/bin/python bench/chaos.py --kills 25 --per-mailbox 100
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.faults.harness import Chaos  # noqa: E402
from tests.servers.dovecot import Dovecot  # noqa: E402
from tests.servers.smtp import SmtpServer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=25)
    parser.add_argument("--per-mailbox", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    dovecot = Dovecot().start()
    smtp = SmtpServer().start()
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="chaos") as work:
            chaos = Chaos(Path(work), dovecot, smtp, per_mailbox=args.per_mailbox, seed=args.seed)
            chaos.load()
            result = chaos.run(kills=args.kills, min_gap=0.3, max_gap=2.5, settle_timeout=900)
    finally:
        smtp.stop()
        dovecot.cleanup()
    print(f"chaos run: {args.kills} SIGKILLs, {4 * args.per_mailbox} messages over 4 mailboxes, "
          f"{time.monotonic() - started:.0f} s")
    for line in result.lines():
        print(f"  {line}")
    ok = not (result.lost or result.duplicates or result.duplicate_acks or result.missing_acks)
    print("RESULT:", "nothing lost, nothing doubled" if ok else "PROBLEMS FOUND")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
