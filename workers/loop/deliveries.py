"""Overlapped delivery: outputs of several batches in flight, offsets stored strictly in order.

The loop produces a batch's outputs and goes on to the next batch without waiting for the
broker's acknowledgements; this ledger counts the acknowledgements per batch and releases a
batch's input offsets only once every output of it *and of every earlier batch* is delivered.
Offsets in Kafka are a high-water mark per partition, so storing a later batch first would skip
an earlier batch whose outputs may still fail: the prefix rule keeps "no offset before its
outputs" exact while compute and delivery overlap.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, Message

from workers.messages.envelope import Source
from workers.messages.outcome import Outcome


@dataclass(slots=True)
class Pending:
    """One batch whose outputs were produced: what it consumed and what is still unacknowledged."""

    records: list[Source]
    outcomes: list[Outcome] = field(default_factory=list)
    skipped_to: dict[tuple[str, int], int] = field(default_factory=dict)
    waiting: int = 0
    failures: list[str] = field(default_factory=list)

    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        """librdkafka's delivery report for one output of this batch (served by producer.poll)."""
        self.waiting -= 1
        if err is not None:
            self.failures.append(f"{msg.topic()}: {err.str()}")


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

    def outputs_waiting(self) -> int:
        return sum(p.waiting for p in self._queue)

    def ready(self, failed: Callable[[Pending], None]) -> list[Pending]:
        """Batches whose outputs, and all earlier ones', are delivered; `failed` is called on the
        first batch with a failed delivery (it raises, and nothing from there on is released)."""
        done: list[Pending] = []
        while self._queue and self._queue[0].waiting <= 0:
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
