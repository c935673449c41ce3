"""Overlapped delivery: outputs of several batches in flight, offsets stored strictly in order.

The loop produces a batch's outputs and goes on to the next batch without waiting for the
broker's acknowledgements; this ledger counts the acknowledgements per batch and releases a
batch's input offsets only once every output of it *and of every earlier batch* is delivered.
Offsets in Kafka are a high-water mark per partition, so storing a later batch first would skip
an earlier batch whose outputs may still fail: the prefix rule keeps "no offset before its
outputs" exact while compute and delivery overlap.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, Message

from workers.loop.outputs import Output, refused
from workers.messages.envelope import Source
from workers.messages.outcome import Outcome

DeliveryReport = Callable[[KafkaError | None, Message], None]


@dataclass(slots=True)
class Pending:
    """One batch whose outputs were produced: what it consumed and what is still unacknowledged."""

    records: list[Source]
    outcomes: list[Outcome] = field(default_factory=list)
    skipped_to: dict[tuple[str, int], int] = field(default_factory=dict)
    waiting: int = 0
    failures: list[str] = field(default_factory=list)
    refused: list[Output] = field(default_factory=list)
    opened_at: float = field(default_factory=time.monotonic)

    def report_for(self, output: Output, *, may_refuse: bool) -> DeliveryReport:
        """librdkafka's delivery report for `output` (served by producer.poll). A record the broker
        refuses for its own bytes is kept for a dead-letter reference when `may_refuse`; any other
        failure fails the batch."""

        def report(err: KafkaError | None, msg: Message) -> None:
            self.waiting -= 1
            if err is None:
                return
            if may_refuse and refused(err):
                self.refused.append(output)
            else:
                self.failures.append(f"{msg.topic()}: {err.str()}")

        return report


class Ledger:
    """Batches in produce order; `ready()` pops the acknowledged prefix."""

    def __init__(self) -> None:
        self._queue: deque[Pending] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def open(self, records: list[Source]) -> Pending:
        pending = Pending(records)
        self._queue.append(pending)
        return pending

    def oldest_s(self) -> float:
        """Seconds the oldest unreleased batch has waited for its acknowledgements (0 when none)."""
        return time.monotonic() - self._queue[0].opened_at if self._queue else 0.0

    def touches(self, partitions: set[tuple[str, int]]) -> bool:
        """Whether an unreleased batch holds records of any of `partitions`."""
        return any((r.topic, r.partition) in partitions for p in self._queue for r in p.records)

    def outputs_waiting(self) -> int:
        return sum(p.waiting for p in self._queue)

    def refused(self) -> list[tuple[Pending, Output]]:
        """Outputs the broker refused since the last call, with their batch (to dead-letter them)."""
        out = [(p, o) for p in self._queue for o in p.refused]
        for p in self._queue:
            p.refused.clear()
        return out

    def ready(self, failed: Callable[[Pending], None]) -> list[Pending]:
        """Batches whose outputs, and all earlier ones', are delivered; `failed` is called on the
        first batch with a failed delivery (it raises, and nothing from there on is released)."""
        done: list[Pending] = []
        while self._queue and self._queue[0].waiting <= 0 and not self._queue[0].refused:
            head = self._queue[0]
            if head.failures:
                failed(head)
            done.append(self._queue.popleft())
        return done

    def clear(self) -> list[Pending]:
        """Forget every batch (a hurried stop): their offsets are never stored."""
        dropped = list(self._queue)
        self._queue.clear()
        return dropped
