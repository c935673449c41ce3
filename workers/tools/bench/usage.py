"""CPU time and peak memory of processes, read from /proc: the cost side of a benchmark row.

CPU-milliseconds per on-time result is the energy proxy on a CPU without power counters; peak
resident memory (VmHWM) is what a process needed at its worst. Linux only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_ms(pid: int, proc: Path = Path("/proc")) -> float:
    """User + system CPU milliseconds the process (all its threads) has used so far; 0 once gone."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    # The command name (field 2) may hold spaces and parentheses: fields are counted after its ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) * 1000.0 / _TICKS_PER_S


def total_cpu_ms(pids: Iterable[int], proc: Path = Path("/proc")) -> float:
    return sum(cpu_ms(pid, proc) for pid in pids)


def peak_rss_mb(pid: int, proc: Path = Path("/proc")) -> float:
    """Peak resident set size (VmHWM) in MiB; 0 once the process is gone."""
    try:
        status = (proc / str(pid) / "status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return 0.0
