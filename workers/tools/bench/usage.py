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


def cpu_stall_us(proc: Path = Path("/proc")) -> float | None:
    """Microseconds (since boot) in which some runnable task waited for a CPU (PSI `some`).

    The difference over a row, divided by its wall time, says how contended the machine was
    while it ran (other jobs included): a number to read tails and stalls against. None where
    the kernel has no pressure accounting.
    """
    try:
        text = (proc / "pressure" / "cpu").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("some "):
            for item in line.split()[1:]:
                key, _, value = item.partition("=")
                if key == "total":
                    return float(value)
    return None
