"""Outbox delivery in a second process, beside a poll that meets a backlog (the polls of
`intake run --once`, or one scheduled poll of the service).

Why a process: reading, parsing and storing mail is CPU-bound Python, and so is much of
delivery's own work (claiming rows, speaking SMTP). A thread beside the polls shares the
one interpreter lock and measured no faster; a second process uses the machine's second
core. On a 2,000-message backlog (bench/ingest.py, SQLite, 2 cores) the run went from
112-126 msg/s with delivery after the polls to 158-173 msg/s with this process beside them.

Why only on a backlog: a fresh interpreter with intake's imports costs about half a second
of CPU and 50 MB, more than delivering a few acknowledgements in the polling process
costs. The worker starts this process once a run has queued
`worker.delivery_process_after` of them.

How: `python -m intake.delivery_process`, with the settings pickled on its stdin. Closing
stdin tells it the polls are done; it then drains what is due and prints its report as
one JSON line. A plain child process rather than multiprocessing, whose spawn start
imports the parent's main module and keeps a resource-tracker process besides (13 MB).

Exactly-once delivery is unchanged (intake/delivery.py): rows are claimed one at a time by
a conditional UPDATE, so this process and any other deliverer never send the same row, and
a crash between the server's acceptance and the commit leaves the row 'sending' to be
flagged, never resent. On SQLite that commit may wait for a poll batch to finish writing
(the database's one writer lock), so the window is a batch's write, not milliseconds.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pickle
import signal
import subprocess
import sys
import threading

from intake.config import Settings
from intake.delivery import DELIVERY_BATCH, DeliveryReport

log = logging.getLogger(__name__)
_IDLE_WAIT = 0.2  # seconds between looks at the outbox while the polls have queued nothing new
# Rows per pass: small enough that a stop request (SIGTERM) is honoured within a second or two.
_PASS = min(DELIVERY_BATCH, 100)


class DeliveryProcess:
    """The child process, seen from the worker: start it, then `finish()` when the polls are
    done to wait for its report."""

    # The child's command line: the module below, run by this interpreter.
    command: tuple[str, ...] = (sys.executable, "-m", "intake.delivery_process")

    def __init__(self, settings: Settings):
        self.settings = settings
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> "DeliveryProcess":
        """Start the process and hand it the settings (OSError if it cannot start)."""
        # stderr is inherited: the child's log lines go where the worker's go.
        self._process = subprocess.Popen(list(self.command), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self._process.stdin is not None
        try:
            pickle.dump(self.settings, self._process.stdin)
            self._process.stdin.flush()
        except OSError:
            self._process.kill()
            self._process.wait()
            raise
        return self

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def finish(self) -> DeliveryReport | None:
        """Tell the process the polls are done and wait for it to drain the outbox. None when
        it ended without a report (it crashed): the caller delivers what is left itself."""
        if self._process is None:
            return None
        out, _ = self._process.communicate()  # closes stdin: "the polls are done"
        try:
            return DeliveryReport(**json.loads(out.decode("utf-8").strip().splitlines()[-1]))
        except (ValueError, IndexError, TypeError):
            log.error("the delivery process ended without a report (exit code %s); delivering here instead",
                      self._process.returncode)
            return None


def deliver_until_done(settings: Settings, polls_done: threading.Event,
                       stop: threading.Event | None = None) -> DeliveryReport:
    """Deliver in batches; once `polls_done` is set, stop after a pass that leaves nothing
    due (checked before the pass, so mail committed last is included). A temporary failure
    ends it early: the worker drains the outbox again after the polls. `stop` ends it after
    the current pass."""
    from intake.clock import SystemClock
    from intake.db import make_engine, make_sessionmaker
    from intake.delivery import deliver_due
    from intake.store import worker_id

    engine = make_engine(settings["database.url"], busy_timeout=settings["database.busy_timeout"])
    sessions = make_sessionmaker(engine)
    clock = SystemClock()
    total = DeliveryReport()
    try:
        while True:
            finishing = polls_done.is_set()
            batch = deliver_due(sessions, settings, clock, worker_id=worker_id(), limit=_PASS)
            total = total + batch
            if batch.error or batch.retried or (stop is not None and stop.is_set()):
                break  # the database or the SMTP server is in trouble, or a stop: the worker delivers the rest
            moved = batch.sent + batch.failed
            if moved < _PASS:
                if finishing:
                    break
                if moved == 0:
                    polls_done.wait(_IDLE_WAIT)
    finally:
        engine.dispose()
    return total


def _main() -> int:
    from intake import logs

    settings: Settings = pickle.load(sys.stdin.buffer)
    logs.configure(settings["logging.level"], settings["logging.format"])
    polls_done, stop = threading.Event(), threading.Event()

    def on_signal(*_: object) -> None:  # the service is stopping (SIGTERM to its group, Ctrl-C)
        stop.set()
        polls_done.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)

    def wait_for_end_of_input() -> None:
        sys.stdin.buffer.read()  # returns at EOF: the worker closed our stdin
        polls_done.set()

    threading.Thread(target=wait_for_end_of_input, name="polls-done", daemon=True).start()
    report = deliver_until_done(settings, polls_done, stop)
    print(json.dumps(dataclasses.asdict(report)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
