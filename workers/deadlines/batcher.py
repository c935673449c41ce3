"""Deadline-aware batching for a stage configured to wait: close when full, or when waiting
longer would make the most urgent member miss.

Batches are work-conserving by default (the worker takes what is already fetched and never
waits). A stage with `batch.max_wait_ms > 0` may wait for company, but never past the moment its
most urgent viable member must start: ``deadline − predicted cost of a batch of the current size
− downstream reserve``, with the cost from the stage's measured `CostModel` and the reserve as
measured now. Members that cannot make it even alone (they will be shed) do not hurry the batch.
The worker loop uses it like this::

    batcher.add(record, deadline)            # for each consumed record
    while not batcher.due() and not batcher.full():
        ... consume more for at most batcher.wait_ms() ...
    batch = batcher.drain()                  # the stage sheds what can no longer make it
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from workers.deadlines.admission import Costs
from workers.deadlines.budget import StageBudget
from workers.errors import BadHeader
from workers.messages import headers as h
from workers.messages.deadline import Clock, Deadline, now_ms, stamp

T = TypeVar("T")


class DeadlineBatcher(Generic[T]):
    """Collects items (envelopes, or raw records with their deadline) and says when to close."""

    def __init__(
        self,
        *,
        budget: Callable[[], StageBudget],
        costs: Costs,
        max_size: int,
        max_wait_ms: float,
        clock: Clock = now_ms,
    ) -> None:
        self.budget = budget
        self.costs = costs
        self.max_size = max_size
        self.max_wait_ms = max_wait_ms
        self._clock = clock
        self._pending: list[tuple[T, Deadline]] = []
        self._opened_ms = 0.0

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, item: T, deadline: Deadline) -> None:
        if not self._pending:
            self._opened_ms = self._clock()
        self._pending.append((item, deadline))

    def full(self) -> bool:
        return len(self._pending) >= self.max_size

    def close_at_ms(self, now: float | None = None) -> float | None:
        """Epoch ms by which the current batch must close; None when there is nothing to close.

        Members that cannot make it even alone (they will be shed) do not hurry the batch: a
        backlog of expired frames is taken in full batches, and skipped at batch speed.
        """
        if not self._pending:
            return None
        if self.full():
            return self._opened_ms
        now = self._clock() if now is None else now
        reserve = self.budget().reserve_ms
        cheapest = self.costs.overhead(1) + min(
            self.costs.primary(1), self.costs.fallback(1) if self.costs.fallback else float("inf")
        )
        viable = [d.at_ms for _, d in self._pending if d.at_ms - now - reserve >= cheapest]
        close = self._opened_ms + self.max_wait_ms
        if viable:
            n = len(viable)
            cost = self.costs.overhead(n) + self.costs.primary(n)
            close = min(close, min(viable) - cost - reserve)
        return close

    def wait_ms(self, now: float | None = None, idle_ms: float = 100.0) -> float:
        """How long the loop may block polling for more messages (`idle_ms` when empty)."""
        now = self._clock() if now is None else now
        close = self.close_at_ms(now)
        if close is None:
            return idle_ms
        return max(0.0, close - now)

    def due(self, now: float | None = None) -> bool:
        now = self._clock() if now is None else now
        close = self.close_at_ms(now)
        return close is not None and close <= now

    def drain(self) -> list[T]:
        """Every pending item in arrival order, leaving the batcher empty (no admission check)."""
        items = [item for item, _ in self._pending]
        self._pending = []
        return items


def record_deadline(msg: Any, budget_ms: float, skew_ms: float, now: float) -> Deadline:
    """The deadline of a consumed confluent_kafka.Message from its header alone (no payload work).

    Never raises: unreadable headers (names that are not UTF-8) count as no deadline header; the
    stage dead-letters such a record when it builds its envelope.
    """
    value: str | None = None
    try:
        for key, raw in h.read(msg):
            if key == h.DEADLINE_MS:
                value = raw.decode("ascii", errors="replace") if isinstance(raw, bytes) else raw
    except BadHeader:
        value = None
    _, ts = msg.timestamp()
    return Deadline(stamp(value, int(ts) if ts and ts > 0 else int(now), budget_ms, skew_ms, now))
