"""Run a module as __main__ and, at exit, write this process's own peak RSS (VmHWM, KB)
and its own CPU seconds (not its children's) to the file named by INTAKE_BENCH_PEAK_FILE.

    python bench/peak.py -m intake --config intake.toml run --once

Why not wait4()'s ru_maxrss: Python starts children with vfork() + exec(), and Linux
carries the high-water mark of the address space exec() replaces into the child's
ru_maxrss. The child's figure is then the larger of its own peak and the *benchmark's*
peak at the time it started the child (which holds the corpus in memory). VmHWM in
/proc/self/status belongs to the current address space only.
"""

from __future__ import annotations

import atexit
import os
import resource
import runpy
import sys


def vm_hwm_kb(pid: int | str = "self") -> int:
    """A process's peak RSS so far (KB), from /proc (0 if it shows none)."""
    return status_kb(pid, "VmHWM")


def status_kb(pid: int | str, field: str) -> int:
    """One memory figure (KB) of a process from /proc/PID/status, e.g. "VmRSS"; 0 if absent."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _write_peak() -> None:
    path = os.environ.get("INTAKE_BENCH_PEAK_FILE")
    if path:
        with open(path, "w", encoding="ascii") as out:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            out.write(f"{vm_hwm_kb()} {usage.ru_utime + usage.ru_stime:.3f}")


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] != "-m":
        raise SystemExit("usage: peak.py -m MODULE [ARGS...]")
    module = sys.argv[2]
    sys.argv = [module, *sys.argv[3:]]
    atexit.register(_write_peak)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
