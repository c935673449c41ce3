"""What one stage may spend of a frame's budget, and the reserve it leaves for the stages after it."""

from __future__ import annotations

from dataclasses import dataclass

from workers.config.spec import STAGE_ORDER, PipelineSpec
from workers.messages.deadline import Deadline

# Kafka produces a frame makes after a stage's compute: one per later stage, plus the final one
# onto P.results. The device's own produce onto P.raw is the first hop of the transport share.
_HOPS_TOTAL = 4


@dataclass(frozen=True, slots=True)
class StageBudget:
    """What one stage of a pipeline may spend: its own share, and the reserve it leaves downstream.

    `reserve_ms` is the budget of the stages after this one plus the part of the transport share
    for the Kafka hops still ahead. A stage admits a frame only if
    ``remaining ≥ expected cost + reserve``.
    """

    stage: str
    total_ms: float
    stage_ms: float
    reserve_ms: float

    @classmethod
    def of(cls, pipeline: PipelineSpec, stage: str) -> StageBudget:
        after = STAGE_ORDER[STAGE_ORDER.index(stage) + 1 :]
        later = sum((pipeline.stages[s].budget_share for s in after), 0.0)  # type: ignore[index]
        hops_ahead = len(after) + 1
        transport = pipeline.transport_share * hops_ahead / _HOPS_TOTAL
        return cls(
            stage=stage,
            total_ms=pipeline.budget_ms,
            stage_ms=pipeline.stage_budget_ms(stage),
            reserve_ms=pipeline.budget_ms * (later + transport),
        )

    def with_reserve(self, reserve_ms: float) -> StageBudget:
        """The same stage budget with another downstream reserve (a measured one)."""
        return StageBudget(self.stage, self.total_ms, self.stage_ms, reserve_ms)

    def slack_ms(self, deadline: Deadline, now: float, cost_ms: float) -> float:
        """Time to spare if the frame starts now and this stage costs `cost_ms` (negative: it misses)."""
        return deadline.remaining_ms(now) - cost_ms - self.reserve_ms

    def latest_start_ms(self, deadline: Deadline, cost_ms: float) -> float:
        """The last moment a run costing `cost_ms` can start and still leave the downstream reserve."""
        return deadline.at_ms - cost_ms - self.reserve_ms
