"""The peer helpdesk, measured in the same run as intake: django-helpdesk 2.6.1's IMAP import
(`get_email`) of the same backlog, from a real Dovecot, replying through the same SMTP server.

It runs in its own virtualenv, `var/peer-venv`, made on first use from
bench/peer-requirements.txt (PyPI, about a minute; made again when that file changes), so
Django never enters intake's environment. bench/peer_helpdesk.py is what runs inside it.

Why measure it rather than quote it: this machine's speed moves by up to 30% within an
hour, which moves intake's figure too; the peer measured minutes apart on the same
machine and the same mail makes "times the peer" a ratio within one run, as the targets ask.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / "var" / "peer-venv"
REQUIREMENTS = REPO / "bench" / "peer-requirements.txt"
SCRIPT = REPO / "bench" / "peer_helpdesk.py"


@dataclass(frozen=True)
class PeerRun:
    messages: int  # in the mailbox when it started
    seconds: float  # get_email alone (not Django's start-up or migrations)
    cpu_seconds: float
    tickets: int
    replies: int  # messages the SMTP server accepted meanwhile

    @property
    def msg_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


def peer_python() -> Path:
    """The peer virtualenv's interpreter, made (or made again) if missing or out of date."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".requirements-sha256"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return python
    print(f"  (installing the peer helpdesk into {VENV.relative_to(REPO)}: once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "-r", str(REQUIREMENTS)], check=True)
    stamp.write_text(wanted)
    return python


def run_peer(python: Path, *, imap_port: int, user: str, password: str, smtp, messages: int) -> PeerRun:  # type: ignore[no-untyped-def]
    """get_email over `user`'s INBOX (which it empties); `smtp` is the tests' SmtpServer."""
    before = len(smtp.messages)
    with tempfile.TemporaryDirectory(prefix="peer") as work:
        done = subprocess.run([str(python), str(SCRIPT), work, str(imap_port), user, password, str(smtp.port)],
                              capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the peer helpdesk failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return PeerRun(messages, result["seconds"], result["cpu"], result["tickets"], len(smtp.messages) - before)
