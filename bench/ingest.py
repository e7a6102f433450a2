"""Backlog benchmark: N interest emails through the whole pipeline, against the raw ceilings
of each stage measured in the same run on the same data.

    .venv/bin/python bench/ingest.py --n 5000 [--db URL] [--profile] [--peer-n N | --no-peer]

Prints messages/s end to end (fetch, parse, classify, route, store, queue and send every
acknowledgement to a real SMTP server), p50/p95 time per message, peak RSS of the worker
process, and the stages alone: batched IMAP fetch, parsing, database writes, building and
sending replies. "Serial ceiling" = 1 / (sum of the stages' per-message costs).

Then the peer: django-helpdesk 2.6.1's IMAP import (`get_email`) of the same backlog (or its
first --peer-n messages), from the same Dovecot, replying through the same SMTP server,
straight after intake's run (bench/peer.py; its own virtualenv, made on first use).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.corpus import GROUP_ADDRESSES, make_corpus  # noqa: E402
from bench.peak import status_kb, vm_hwm_kb  # noqa: E402
from bench.peer import PeerRun, peer_python, run_peer  # noqa: E402
from tests.servers.dovecot import Dovecot  # noqa: E402
from tests.servers.smtp import SmtpServer  # noqa: E402
from tests.support.config import MailboxSpec, write_config  # noqa: E402

PEER_QUOTED_MSGS_PER_S = 40.0  # django-helpdesk 2.6.1 get_email in ../shared/notes: shown when --no-peer


def timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def load_mailboxes(dovecot: Dovecot, corpus, tag: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    users = {code: dovecot.add_user(f"{code.lower()}-bench-{tag}@example.org", "pw") for code in GROUP_ADDRESSES}
    by_code: dict[str, list[bytes]] = {code: [] for code in GROUP_ADDRESSES}
    for code, data in corpus:
        by_code[code].append(data)
    for code, datas in by_code.items():
        dovecot.append_many(users[code], "INBOX", datas)
    return users


def load_peer_mailbox(dovecot: Dovecot, corpus, count: int, tag: str) -> str:  # type: ignore[no-untyped-def]
    """The peer's one mailbox: the backlog's first `count` messages, in order (it has one queue)."""
    user = dovecot.add_user(f"peer-bench-{tag}@example.org", "pw")
    for start in range(0, count, 500):
        dovecot.append_many(user, "INBOX", [data for _, data in corpus[start:min(count, start + 500)]])
    return user


def config_for(workdir: Path, dovecot: Dovecot, users: dict[str, str], smtp_port: int, db_url: str | None) -> Path:
    boxes = [MailboxSpec(code.lower(), user, "pw", port=dovecot.port, group=code, extra={"idle": False})
             for code, user in users.items()]
    return write_config(workdir, mailboxes=boxes, smtp_port=smtp_port, database_url=db_url,
                        sections={"ack": {"enabled": True, "max_per_hour": 1_000_000},
                                  "worker": {"batch_size": 200, "jitter": 0}})


def stage_fetch(settings) -> tuple[float, list]:  # type: ignore[no-untyped-def]
    from intake.imap import ImapMailbox

    raws = []
    start = time.perf_counter()
    for mailbox in settings.mailboxes:
        with ImapMailbox(mailbox) as box:
            raws.extend(box.fetch(box.uids_after(0), batch_size=200))
    return time.perf_counter() - start, raws


def stage_parse(raws) -> tuple[float, list]:  # type: ignore[no-untyped-def]
    from intake.parsing import parse

    start = time.perf_counter()
    parsed = [parse(r.data) for r in raws]
    return time.perf_counter() - start, parsed


def stage_store(raws, parsed, url: str) -> float:  # type: ignore[no-untyped-def]
    from intake.db import make_engine, make_sessionmaker, upgrade
    from intake.models import Message, MessageSource, RawMessageRow

    upgrade(url)
    sessions = make_sessionmaker(make_engine(url))
    start = time.perf_counter()
    for i in range(0, len(raws), 200):
        with sessions.begin() as s:
            for raw, msg in zip(raws[i:i + 200], parsed[i:i + 200]):
                row = Message(message_id=msg.message_id, message_id_key=msg.message_id.lower(), content_hash=raw.content_hash,
                              mailbox=raw.ref.mailbox, kind="interest", received_at=raw.internal_date,
                              subject=msg.subject, body_text=msg.text, body_html=msg.html, size=len(raw.data))
                row.raw = RawMessageRow(data=raw.data)
                s.add(row)
                s.flush()
                s.add(MessageSource(message_pk=row.id, mailbox=raw.ref.mailbox, uidvalidity=raw.ref.uidvalidity, uid=raw.ref.uid))
    return time.perf_counter() - start


def stage_reply(parsed, settings) -> float:  # type: ignore[no-untyped-def]
    """Render, build and send one reply per message over one reused SMTP connection."""
    from email.message import EmailMessage

    from intake.ack import Acknowledger
    from intake.clock import SystemClock
    from intake.smtp import SmtpSender

    ack = Acknowledger(settings, SystemClock())
    start = time.perf_counter()
    with SmtpSender(settings) as sender:
        for msg in parsed:
            text = ack.preview("SWIG", msg.from_.name if msg.from_ else "")
            reply = EmailMessage()
            reply["From"], reply["To"], reply["Subject"] = settings["smtp.from_address"], msg.from_.email, "Your interest"
            reply.set_content(text)
            reply.add_alternative(f"<p>{text}</p>", subtype="html")
            sender.send("blfi@example.org", msg.from_.email, reply.as_bytes())
    return time.perf_counter() - start


def end_to_end(config: Path, profile: bool) -> tuple[float, float, float, int, "ChildPeaks", str]:
    """Seconds, CPU seconds of the worker and of its children, peak RSS (KB) of the worker
    itself, what was sampled of its child processes (delivery, parsing), its stdout.

    The peak is the worker's own VmHWM, written at exit by bench/peak.py: wait4()'s
    ru_maxrss would also count this benchmark's own peak (vfork + exec carries it over),
    and RUSAGE_CHILDREN would be the largest of every child this benchmark ever waited for."""
    peak = [sys.executable, str(REPO / "bench" / "peak.py"), "-m"]
    cmd = [*peak, "intake", "--config", str(config), "run", "--once"]
    if profile:
        (REPO / "var").mkdir(exist_ok=True)
        cmd = [*peak, "pyinstrument", "-o", str(REPO / "var" / "ingest-profile.txt"), "-m", "intake",
               "--config", str(config), "run", "--once"]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(prefix="peak", suffix=".kb") as peak_file:
        env = {**os.environ, "INTAKE_BENCH_PEAK_FILE": peak_file.name}
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        children = ChildPeaks(proc.pid)
        children.start()
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        children.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, cmd, out.read(), err.read())
        peak_text, own_cpu_text = (Path(peak_file.name).read_text() or "0 0").split()
        peak_kb, own_cpu = int(peak_text), float(own_cpu_text)
        return (elapsed, own_cpu, usage.ru_utime + usage.ru_stime - own_cpu, peak_kb, children,
                out.read().decode("utf-8", "replace"))


class ChildPeaks(threading.Thread):
    """Samples the worker's child processes every 50 ms while it runs: each one's kind (from
    its command line), peak RSS (VmHWM) and CPU seconds so far, and the largest sum of the
    worker's and its children's RSS seen in one sample (what they held at once)."""

    KINDS = {b"intake.delivery_process": "delivery", b"intake.parse_process": "parse"}

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self._stop_event = pid, threading.Event()
        self.kind: dict[str, str] = {}
        self.peaks: dict[str, int] = {}
        self.cpu: dict[str, float] = {}
        self.together_kb = 0

    def run(self) -> None:
        ticks = os.sysconf("SC_CLK_TCK")
        while not self._stop_event.wait(0.05):
            try:
                pids = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
                together = status_kb(self.pid, "VmRSS")
            except OSError:
                continue
            for child in pids:
                try:
                    if self.kind.get(child, "other") == "other":  # sampled before its exec: look again
                        cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
                        self.kind[child] = next((k for m, k in self.KINDS.items() if m in cmdline), "other")
                    self.peaks[child] = max(self.peaks.get(child, 0), vm_hwm_kb(child))
                    fields = _stat_fields(Path(f"/proc/{child}/stat"))
                    self.cpu[child] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
                    together += status_kb(child, "VmRSS")
                except OSError:  # it has just exited
                    continue
            self.together_kb = max(self.together_kb, together)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def by_kind(self) -> dict[str, tuple[int, int, float]]:
        """Kind -> (processes, largest peak RSS in KB, CPU seconds as last sampled)."""
        out: dict[str, tuple[int, int, float]] = {}
        for child, kind in self.kind.items():
            count, peak, cpu = out.get(kind, (0, 0, 0.0))
            out[kind] = (count + 1, max(peak, self.peaks.get(child, 0)), cpu + self.cpu.get(child, 0.0))
        return out


def _stat_fields(stat: Path) -> list[str]:
    """The fields of /proc/PID/stat after the process name (state, ppid, pgrp, ...)."""
    return stat.read_text().rsplit(")", 1)[1].split()


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds used so far by a process group (the IMAP server's processes), including
    children they have already reaped."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = _stat_fields(stat)
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp, ...
            total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return total / ticks


def own_cpu_seconds() -> float:
    """CPU seconds of this process: the SMTP sink runs in a thread here (so does ChildPeaks'
    sampling, a few reads of /proc every 50 ms, counted in with the sink)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def per_message_times(db_url: str) -> tuple[list[float], float, float]:
    """Intervals between consecutive messages' processing times (per-message cost), and the
    seconds from the first message's processing to the last one's and to the last send."""
    from sqlalchemy import func, select

    from intake.db import make_engine, make_sessionmaker
    from intake.models import Message, Outbox

    with make_sessionmaker(make_engine(db_url))() as s:
        stamps = sorted(_seconds(t) for t in s.execute(select(Message.fetched_at)).scalars())
        last_sent = s.execute(select(func.max(Outbox.sent_at))).scalar_one()
    if not stamps:
        return [], 0.0, 0.0
    sent = (_seconds(last_sent) if last_sent else stamps[-1]) - stamps[0]
    return [b - a for a, b in zip(stamps, stamps[1:])], stamps[-1] - stamps[0], sent


def _seconds(t: dt.datetime) -> float:
    return (t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)).timestamp()  # stored as UTC


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def print_peer(peer: PeerRun | None, rate: float) -> None:
    if peer is None:
        print(f"  end to end / peer helpdesk ({PEER_QUOTED_MSGS_PER_S:.0f} msg/s, quoted, not measured): "
              f"{rate / PEER_QUOTED_MSGS_PER_S:.1f}x")
        return
    print(f"  peer helpdesk (django-helpdesk 2.6.1 get_email, this run): {peer.msg_per_s:,.1f} msg/s "
          f"({peer.messages} messages in {peer.seconds:.1f} s, CPU {peer.cpu_seconds / peer.messages * 1000:.2f} ms/msg; "
          f"{peer.tickets} tickets, {peer.replies} replies accepted by SMTP)")
    print(f"  end to end / peer helpdesk:         {rate / peer.msg_per_s:.1f}x")
    if peer.tickets != peer.messages or peer.replies != peer.messages:
        print("  (the peer did not make a ticket and a reply for every message: the ratio is not like for like)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--db", help="database URL for the end-to-end run (default: a fresh SQLite file)")
    parser.add_argument("--profile", action="store_true", help="profile the end-to-end run with pyinstrument")
    parser.add_argument("--peer-n", type=int, help="give the peer helpdesk only the first N messages (default: all)")
    parser.add_argument("--no-peer", action="store_true", help="skip the peer helpdesk (show the quoted figure)")
    args = parser.parse_args()
    peer_n = 0 if args.no_peer else min(args.peer_n or args.n, args.n)
    python = None
    if peer_n:
        try:
            python = peer_python()
        except (OSError, subprocess.CalledProcessError) as exc:  # no PyPI here, say: the quoted figure instead
            print(f"  (could not install the peer helpdesk: {exc}; comparing with the quoted figure)", flush=True)
            peer_n = 0

    from intake.config import load_settings

    dovecot, smtp = Dovecot().start(), SmtpServer().start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench") as work:
            workdir = Path(work)
            corpus = make_corpus(args.n)
            total_mb = sum(len(d) for _, d in corpus) / 1e6
            t_append, users = timed(load_mailboxes, dovecot, corpus, str(os.getpid()))
            peer_user = load_peer_mailbox(dovecot, corpus, peer_n, str(os.getpid())) if peer_n else ""
            del corpus
            db_url = args.db or f"sqlite:///{workdir / 'e2e.db'}"
            config = config_for(workdir, dovecot, users, smtp.port, db_url)
            settings = load_settings(config, env={})
            t_fetch, raws = stage_fetch(settings)
            t_parse, parsed = stage_parse(raws)
            t_store = stage_store(raws, parsed, f"sqlite:///{workdir / 'stage.db'}")
            t_reply = stage_reply(parsed, settings)
            smtp.clear()
            n = len(raws)
            del raws, parsed
            cpu_before = own_cpu_seconds(), group_cpu_seconds(dovecot.master_pid())
            t_e2e, cpu_worker, cpu_children, peak_kb, children, out = end_to_end(config, args.profile)
            cpu_sink = own_cpu_seconds() - cpu_before[0]
            cpu_imap = group_cpu_seconds(dovecot.master_pid()) - cpu_before[1]
            acks = len(smtp.messages)
            times, polls_span, sends_span = per_message_times(db_url)
            peer = (run_peer(python, imap_port=dovecot.port, user=peer_user, password="pw", smtp=smtp, messages=peer_n)
                    if python is not None else None)
    finally:
        smtp.stop()
        dovecot.cleanup()
    per = {k: v / n for k, v in {"fetch": t_fetch, "parse": t_parse, "store": t_store, "reply": t_reply}.items()}
    ceiling = 1 / sum(per.values())
    rate = n / t_e2e
    print(f"ingest benchmark: {n} messages, {total_mb:.0f} MB, database {'SQLite' if not args.db else args.db.split(':')[0]}")
    print(f"  set-up: MULTIAPPEND {n / t_append:,.0f} msg/s")
    for stage, cost in per.items():
        print(f"  stage alone: {stage:<6} {1 / cost:>9,.0f} msg/s  ({cost * 1000:.2f} ms/msg)")
    print(f"  serial ceiling (1 / sum of stages): {ceiling:,.0f} msg/s")
    print(f"  end to end (intake run --once):     {rate:,.0f} msg/s  ({t_e2e:.1f} s, {acks} acks accepted by SMTP)")
    cpu_all = cpu_worker + cpu_children + cpu_sink + cpu_imap
    cores = os.cpu_count() or 1
    kinds = children.by_kind()
    helpers = ", ".join(f"{kind} {cpu / n * 1000:.2f} ms" for kind, (_, _, cpu) in sorted(kinds.items())) or "none ran"
    print(f"  CPU per message: worker {cpu_worker / n * 1000:.2f} ms; its helper processes {cpu_children / n * 1000:.2f} ms "
          f"({helpers}); SMTP sink {cpu_sink / n * 1000:.2f} ms, IMAP server {cpu_imap / n * 1000:.2f} ms")
    print(f"  busy: worker {cpu_worker / t_e2e:.0%} of one core, its helpers {cpu_children / t_e2e:.0%}; "
          f"all of them {cpu_all / t_e2e / cores:.0%} of {cores} cores")
    print(f"  end to end / serial ceiling:        {rate / ceiling:.0%}")
    print_peer(peer, rate)
    print(f"  from the first message stored: the last stored after {polls_span:.1f} s, the last ack sent after {sends_span:.1f} s")
    print(f"  per message: p50 {pct(times, 0.5) * 1000:.2f} ms, p95 {pct(times, 0.95) * 1000:.2f} ms")
    helper_peaks = ", ".join(f"{kind} {peak / 1024:.0f} MB ({count} process{'es' if count > 1 else ''})"
                             for kind, (count, peak, _) in sorted(kinds.items())) or "none ran"
    print(f"  peak RSS: worker {peak_kb / 1024:.0f} MB; each helper at most: {helper_peaks}; "
          f"worker and helpers at once {children.together_kb / 1024:.0f} MB (sampled every 50 ms)")
    print(json.dumps({"n": n, "msg_per_s": round(rate, 1), "ceiling": round(ceiling, 1), "fraction": round(rate / ceiling, 3),
                      "peak_rss_mb": round(peak_kb / 1024), "together_rss_mb": round(children.together_kb / 1024),
                      "acks": acks, "peer_msg_per_s": round(peer.msg_per_s, 1) if peer else None,
                      "times_peer": round(rate / peer.msg_per_s, 2) if peer and peer.msg_per_s else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
