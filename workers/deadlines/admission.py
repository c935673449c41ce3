"""Admission: which members of a batch run (on which model variant) and which are shed as late.

A stage decides this on taking a batch, before any compute: a frame whose remaining time cannot
cover the stage's expected cost plus the downstream reserve goes to `P.late` — `expired` when its
deadline has already passed, `insufficient-budget` when it would miss — with the overrun it would
have had. Only the header deadline is read, so an expired backlog after a restart is skipped in
bulk at the cost of a header check per record.

Every output of one `Stage.process` call leaves together when the call returns, so all admitted
members finish at the same moment: ``now + overhead(m) + fallback(j) + primary(m − j)`` for `m`
admitted of which the `j` most urgent run on the cheaper fallback. The plan admits as many
members as can finish in time, and of those runs as many as possible on the primary model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from workers.deadlines.budget import StageBudget
from workers.messages import reasons
from workers.messages.deadline import Deadline
from workers.messages.reasons import ShedReason as LateReason

CostFn = Callable[[int], float]


def _free(n: int) -> float:
    return 0.0


@dataclass(frozen=True, slots=True)
class Costs:
    """Planning costs (ms) of a batch of n on each path through a stage."""

    primary: CostFn
    fallback: CostFn | None = None
    overhead: CostFn = _free


@dataclass(frozen=True, slots=True)
class Shed:
    """A member that will not run: why, and by how much it would have missed."""

    index: int
    reason: LateReason
    overrun_ms: float
    remaining_ms: float
    cost_ms: float
    reserve_ms: float

    def detail(self, stage: str) -> str:
        """Text for `ontime-error-detail`; starts with a parseable `overrun_ms=`."""
        if self.reason == reasons.EXPIRED:
            why = f"deadline passed {-self.remaining_ms:.1f} ms before {stage}"
        else:
            why = (
                f"{stage} needs {self.cost_ms:.1f} ms + {self.reserve_ms:.1f} ms downstream reserve, "
                f"{self.remaining_ms:.1f} ms left"
            )
        return f"overrun_ms={self.overrun_ms:.1f}; {why}"


@dataclass(slots=True)
class Plan:
    """Indices into the batch: who runs on the primary, who on the fallback, who is shed."""

    primary: list[int] = field(default_factory=list)
    fallback: list[int] = field(default_factory=list)
    shed: list[Shed] = field(default_factory=list)
    cost_ms: float = 0.0

    @property
    def admitted(self) -> int:
        return len(self.primary) + len(self.fallback)


def plan(deadlines: Sequence[Deadline], now: float, budget: StageBudget, costs: Costs) -> Plan:
    """Decide, at `now`, the fate of each member of a batch with these deadlines."""
    out = Plan()
    remaining = [d.remaining_ms(now) for d in deadlines]
    order = sorted(range(len(deadlines)), key=remaining.__getitem__)
    reserve = budget.reserve_ms
    live: list[int] = []
    for i in order:
        if remaining[i] <= 0:
            out.shed.append(Shed(i, reasons.EXPIRED, -remaining[i], remaining[i], 0.0, reserve))
        else:
            live.append(i)
    if not live:
        return out
    cheapest = _cost(costs, 1, 1 if costs.fallback else 0)
    doomed = [i for i in live if remaining[i] - reserve < cheapest]
    for i in doomed:
        out.shed.append(_insufficient(i, remaining[i], cheapest, reserve))
    live = live[len(doomed) :]
    while live:
        m = len(live)
        spare = remaining[live[0]] - reserve
        for j in range(m + 1 if costs.fallback else 1):
            cost = _cost(costs, m, j)
            if spare >= cost:
                out.fallback = sorted(live[:j])
                out.primary = sorted(live[j:])
                out.cost_ms = cost
                return out
        out.shed.append(_insufficient(live[0], remaining[live[0]], _cost(costs, m, 0), reserve))
        live = live[1:]
    return out


def _cost(costs: Costs, m: int, on_fallback: int) -> float:
    total = costs.overhead(m)
    if on_fallback and costs.fallback is not None:
        total += costs.fallback(on_fallback)
    if m - on_fallback:
        total += costs.primary(m - on_fallback)
    return total


def _insufficient(i: int, remaining: float, cost: float, reserve: float) -> Shed:
    return Shed(i, reasons.INSUFFICIENT_BUDGET, cost + reserve - remaining, remaining, cost, reserve)
