"""Parsing one poll batch ahead, in a second process, while the worker stores the batch
before it (on a backlog).

Why: parsing MIME is CPU-bound Python, about a third of the polling process's work on a
backlog, and a thread would share the interpreter lock. Handed to a second process one
batch ahead, it runs on the machine's other core while the worker classifies, stores and
acknowledges the batch before. Handing the bytes over and reading the parsed messages back
costs the worker about 0.05 ms a message; parsing one costs it about 1 ms.

Why only on a backlog: the process costs about 0.1 s of CPU and 20 MB to start, more than
parsing a few messages. A poll starts it when it finds `worker.parse_process_after`
messages waiting in its mailbox, and stops it when the poll ends.

How: `python -m intake.parse_process`. Frames on its stdin and stdout are an 8-byte length
and a pickle (the two ends are this module, run by the same interpreter). The first frame
is the size above which a message is not parsed in full (`worker.max_message_bytes`); each
later frame is one batch of raw messages, answered by one frame with their results in the
same order (for each: its quick header look, which the worker's bulk deduplication reads,
and its parse). End of input ends it. The worker has at most one batch outstanding: it reads
the answer before it sends the next batch, so neither side can block the other on a full
pipe.

The child runs `intake.parsing.quick_headers` and `parse_or_reason`, the functions the worker
would run itself, so a message is stored the same either way. Whatever goes wrong with the process (it cannot
start, dies, sends something unreadable), the worker parses that batch and the rest of the
poll itself: nothing is lost, and nothing is stored twice, because storing stays in the
worker.
"""

from __future__ import annotations

import logging
import pickle
import signal
import struct
import subprocess
import sys
from typing import BinaryIO, Sequence

from intake.domain import InboundMessage
from intake.parsing import ParseResult, QuickHeaders, Unparseable, parse_or_reason, quick_headers

log = logging.getLogger(__name__)
_LENGTH = struct.Struct(">Q")


class ParseAhead:
    """The child process, seen from the worker: `submit` a batch, `collect` its results
    (before submitting the next), `close` at the end of the poll."""

    # The child's command line: the module below, run by this interpreter.
    command: tuple[str, ...] = (sys.executable, "-m", "intake.parse_process")

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._process: subprocess.Popen[bytes] | None = None
        self._outstanding = 0  # messages submitted and not yet collected

    def start(self) -> "ParseAhead":
        """Start the process (OSError if it cannot start)."""
        # stderr is inherited: the child's tracebacks go where the worker's logs go.
        self._process = subprocess.Popen(list(self.command), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            self._send(self.max_bytes)
        except OSError:
            self._stop(kill=True)
            raise
        return self

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def submit(self, batch: Sequence[bytes]) -> None:
        """Hand a batch to the process (a no-op once it has failed: `collect` then says so)."""
        assert self._outstanding == 0, "collect the batch before submitting the next"
        if self._process is None:
            return
        try:
            self._send(list(batch))
            self._outstanding = len(batch)
        except (OSError, pickle.PicklingError) as exc:
            self._fail(f"could not hand it a batch: {type(exc).__name__}: {exc}")

    def collect(self) -> list[tuple[QuickHeaders, ParseResult]] | None:
        """The submitted batch's results, in order: each message's quick header look (see
        `parsing.quick_headers`) and its parse. None when the process failed (the caller
        reads that batch itself)."""
        if self._process is None or not self._outstanding:
            return None
        expected, self._outstanding = self._outstanding, 0
        try:
            results = _read_frame(self._stdout())
        except Exception as exc:  # noqa: BLE001 - whatever came back (or did not), parse here instead
            self._fail(f"no readable answer: {type(exc).__name__}: {exc}")
            return None
        if not isinstance(results, list) or len(results) != expected or not all(
                isinstance(r, tuple) and len(r) == 2 and isinstance(r[0], QuickHeaders)
                and isinstance(r[1], (InboundMessage, Unparseable)) for r in results):
            self._fail("an answer that does not match the batch")
            return None
        return results

    def close(self) -> None:
        """End the process (closing its input ends it) and wait for it."""
        if self._process is not None:
            self._stop(kill=False)

    # -- internals -----------------------------------------------------------------------
    def _send(self, value: object) -> None:
        assert self._process is not None and self._process.stdin is not None
        _write_frame(self._process.stdin, value)

    def _stdout(self) -> BinaryIO:
        assert self._process is not None and self._process.stdout is not None
        return self._process.stdout

    def _fail(self, reason: str) -> None:
        pid = self.pid
        code = self._stop(kill=True)
        log.warning("the parse process (pid %s, exit code %s) failed: %s; parsing in the worker from here on",
                    pid, code, reason)

    def _stop(self, *, kill: bool) -> int | None:
        process, self._process = self._process, None
        self._outstanding = 0
        if process is None:
            return None
        if kill:
            process.kill()
        for stream in (process.stdin, process.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass  # a broken pipe to a process that is gone anyway
        try:
            return process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()


def _read_frame(stream: BinaryIO) -> object:
    head = _read_exactly(stream, _LENGTH.size)
    (length,) = _LENGTH.unpack(head)
    return pickle.loads(_read_exactly(stream, length))


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)  # a buffered read: returns short only at end of input
    if data is None or len(data) != size:
        raise EOFError(f"the other end closed after {0 if data is None else len(data)} of {size} bytes")
    return data


def _write_frame(stream: BinaryIO, value: object) -> None:
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def _main() -> int:
    # Ctrl-C reaches the whole process group: the worker decides when this ends (by closing
    # our input), so a stopping service does not print this process's traceback too.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    try:
        max_bytes = _read_frame(stdin)
    except EOFError:
        return 0
    while True:
        try:
            batch = _read_frame(stdin)
        except EOFError:  # the worker's poll is over
            return 0
        _write_frame(stdout, [(quick_headers(data), parse_or_reason(data, max_bytes=max_bytes)) for data in batch])


if __name__ == "__main__":
    sys.exit(_main())
