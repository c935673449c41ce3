"""Deadline-aware dynamic batching: a batch closes when full, or when waiting longer would make
its most urgent member miss.

Bigger batches are cheaper per frame, so the infer stage waits for more frames — but only as long
as its most urgent member can afford: it must close by ``deadline − predicted latency of a batch
of the current size − downstream reserve``. The latency comes from the stage's measured
`CostModel`, so the batcher waits less when runs get slower. `max_wait_ms` caps the wait when
every member has time to spare. On `take`, members that can no longer make it, even on the
fallback model, are removed before the run (they go to `P.late`).

The worker loop uses it like this::

    batcher.add(env)                       # for each consumed message
    poll_timeout = batcher.wait_ms()       # how long it may poll for more
    if batcher.due():
        batch, dropped = batcher.take()    # run `batch`, route `dropped` late
"""

from __future__ import annotations

from collections.abc import Iterable

from workers.deadline import Budget, Clock, now_ms
from workers.envelope import Envelope
from workers.shedding import Costs, Shed, plan


class DeadlineBatcher:
    """Collects envelopes for one stage and says when the current batch must close."""

    def __init__(
        self, *, budget: Budget, costs: Costs, max_size: int, max_wait_ms: float, clock: Clock = now_ms
    ) -> None:
        self.budget = budget
        self.costs = costs
        self.max_size = max_size
        self.max_wait_ms = max_wait_ms
        self._clock = clock
        self._pending: list[Envelope] = []
        self._opened_ms = 0.0

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, env: Envelope) -> None:
        if not self._pending:
            self._opened_ms = self._clock()
        self._pending.append(env)

    def full(self) -> bool:
        return len(self._pending) >= self.max_size

    def close_at_ms(self) -> float | None:
        """Epoch ms by which the current batch must close; None when there is nothing to close."""
        if not self._pending:
            return None
        if self.full():
            return self._opened_ms
        n = len(self._pending)
        cost = self.costs.overhead(n) + self.costs.primary(n)
        urgent = min(e.deadline.at_ms for e in self._pending)
        return min(self._opened_ms + self.max_wait_ms, urgent - cost - self.budget.reserve_ms)

    def wait_ms(self, now: float | None = None, idle_ms: float = 100.0) -> float:
        """How long the loop may block polling for more messages (`idle_ms` when empty)."""
        close = self.close_at_ms()
        if close is None:
            return idle_ms
        return max(0.0, close - (self._clock() if now is None else now))

    def due(self, now: float | None = None) -> bool:
        close = self.close_at_ms()
        return close is not None and close <= (self._clock() if now is None else now)

    def take(self, now: float | None = None) -> tuple[list[Envelope], list[tuple[Envelope, Shed]]]:
        """Close the batch: up to `max_size` members to run (arrival order), and those dropped."""
        now = self._clock() if now is None else now
        members, self._pending = self._pending[: self.max_size], self._pending[self.max_size :]
        if self._pending:
            self._opened_ms = now
        decided = plan([e.deadline for e in members], now, self.budget, self.costs)
        dropped = {s.index: s for s in decided.shed}
        batch = [e for i, e in enumerate(members) if i not in dropped]
        return batch, [(members[i], s) for i, s in sorted(dropped.items())]

    def discard(self, partitions: Iterable[tuple[str, int]]) -> list[Envelope]:
        """Forget members from revoked partitions (their new owner will consume them again)."""
        gone = set(partitions)
        keep: list[Envelope] = []
        lost: list[Envelope] = []
        for env in self._pending:
            src = env.source
            (lost if src is not None and (src.topic, src.partition) in gone else keep).append(env)
        self._pending = keep
        return lost
