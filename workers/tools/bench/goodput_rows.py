"""Rows of `ontime bench goodput`: what one contender did with one load, and their medians.

Definitions (docs/benchmarks.md):
- *on time*: a result completed (`completed_ms`) by its frame's deadline, capture time + budget —
  the same deadline for every contender, whether it knows about deadlines or not;
- *goodput*: on-time results per second of sending; as % of the contender's own capacity;
- *shed*: frames accounted by late records (a record may stand for several), of those sent;
- *admitted*: results + `missed` late records (computed, finished past the deadline);
- *exact*: sent = results + late + dlq, each frame counted once;
- *CPU ms / on-time*: user + system CPU of all the contender's processes over the row, per
  on-time result; *RSS*: peak resident memory (VmHWM) of each process, MiB.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from workers.messages.reasons import MISSED
from workers.tools.bench.harness import Seen
from workers.tools.stats import summarize

CAPACITY = "capacity"
BURST = "burst"


@dataclass
class Row:
    """One contender × one load × one repeat."""

    contender: str
    load: str  # "capacity", "0.25×" …, "burst"
    factor: float  # of the contender's own capacity; 0 for capacity and burst
    capacity: float  # frames/s of this contender in this repeat
    sent: int = 0
    elapsed_s: float = 0.0
    results: int = 0
    on_time: int = 0
    late: int = 0
    missed: int = 0
    dlq: int = 0
    e2e_ms: list[float] = field(default_factory=list)
    cpu_ms: float = 0.0
    rss_mb: list[float] = field(default_factory=list)
    drained: bool = True
    late_by: dict[str, int] = field(default_factory=dict)  # "stage:reason" → frames
    # Per stage, of the results: queue (incl. the Kafka hop into it) and compute, ms per frame.
    stall_pct: float = math.nan  # of the row's wall time, some task waited for a CPU (PSI)
    queue_ms: dict[str, list[float]] = field(default_factory=dict)
    compute_ms: dict[str, list[float]] = field(default_factory=dict)

    def add(self, seen: Seen, budget_ms: float) -> None:
        """Count one record that came out for this row."""
        if seen.kind == "late":
            self.late += seen.count
            where = f"{seen.stage}:{seen.reason}"
            self.late_by[where] = self.late_by.get(where, 0) + seen.count
            self.missed += seen.count if seen.reason == MISSED else 0
            return
        if seen.kind == "dlq":
            self.dlq += seen.count
            return
        self.results += 1
        for stage, queue, compute in seen.stages:
            self.queue_ms.setdefault(stage, []).append(queue)
            self.compute_ms.setdefault(stage, []).append(compute)
        deadline = seen.deadline_ms
        if deadline is None and seen.captured_ms is not None:
            deadline = seen.captured_ms + int(budget_ms)
        if seen.completed_ms is not None and deadline is not None and seen.completed_ms <= deadline:
            self.on_time += 1
        if seen.captured_ms is not None:
            delivered = seen.appended_ms if seen.appended_ms is not None else seen.received_ms
            self.e2e_ms.append(delivered - seen.captured_ms)

    @property
    def exact(self) -> bool:
        return self.drained and self.sent == self.results + self.late + self.dlq

    @property
    def offered(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else math.nan

    @property
    def goodput(self) -> float:
        return self.on_time / self.elapsed_s if self.elapsed_s > 0 else math.nan

    @property
    def goodput_pct(self) -> float:
        return 100.0 * self.goodput / self.capacity if self.capacity > 0 else math.nan

    @property
    def shed_pct(self) -> float:
        return 100.0 * self.late / self.sent if self.sent else math.nan

    @property
    def on_time_pct(self) -> float:
        admitted = self.results + self.missed
        return 100.0 * self.on_time / admitted if admitted else math.nan

    @property
    def cpu_per_on_time(self) -> float:
        return self.cpu_ms / self.on_time if self.on_time else math.nan

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("e2e_ms")
        summary = summarize(self.e2e_ms)
        data.update(e2e_p50_ms=summary.p50, e2e_p99_ms=summary.p99, exact=self.exact)
        for name in ("queue_ms", "compute_ms"):
            data[name] = {
                stage: {"p50": s.p50, "p99": s.p99}
                for stage, values in getattr(self, name).items()
                for s in [summarize(values)]
            }
        return data


@dataclass(frozen=True)
class Median:
    """A (contender, load) cell over repeats: the median of each figure, exact only if every repeat was."""

    contender: str
    load: str
    factor: float
    repeats: int
    capacity: float
    offered: float
    goodput: float
    goodput_pct: float
    shed_pct: float
    on_time_pct: float
    p50_ms: float
    p99_ms: float
    cpu_per_on_time: float
    rss_mb: tuple[float, ...]
    sent: int
    exact: int  # repeats whose accounting was exact
    accounting: str  # of the last repeat: "sent = results + late + dlq"

    @classmethod
    def of(cls, rows: Sequence[Row]) -> Median:
        last = rows[-1]

        def med(values: Sequence[float]) -> float:
            kept = [v for v in values if not math.isnan(v)]
            return statistics.median(kept) if kept else math.nan

        per_process = [max(r.rss_mb[i] for r in rows if i < len(r.rss_mb)) for i in range(len(last.rss_mb))]
        return cls(
            contender=last.contender,
            load=last.load,
            factor=last.factor,
            repeats=len(rows),
            capacity=med([r.capacity for r in rows]),
            offered=med([r.offered for r in rows]),
            goodput=med([r.goodput for r in rows]),
            goodput_pct=med([r.goodput_pct for r in rows]),
            shed_pct=med([r.shed_pct for r in rows]),
            on_time_pct=med([r.on_time_pct for r in rows]),
            p50_ms=med([summarize(r.e2e_ms).p50 for r in rows]),
            p99_ms=med([summarize(r.e2e_ms).p99 for r in rows]),
            cpu_per_on_time=med([r.cpu_per_on_time for r in rows]),
            rss_mb=tuple(per_process),
            sent=int(statistics.median([r.sent for r in rows])),
            exact=sum(r.exact for r in rows),
            accounting=f"{last.sent} = {last.results} + {last.late} + {last.dlq}"
            + ("" if last.drained else " (not drained)"),
        )


def medians(rows: Sequence[Row]) -> list[Median]:
    """One Median per (contender, load), in the order the rows first appear."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.contender, row.load), []).append(row)
    return [Median.of(g) for g in groups.values()]
