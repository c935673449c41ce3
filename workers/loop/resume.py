"""At-least-once: a lost assignment handed back redoes the batch in hand, not everything since
the last commit that reached a coordinator.

**A lost assignment forgot what was delivered.** A broker outage longer than the session
  timeout (or a coordinator moving in a cluster) makes librdkafka declare the partitions lost;
  the worker dropped their stored offsets, and when the group handed the same partitions back
  the consumer started again from the last commit that had reached a coordinator — everything
  delivered since (the ~20 s of a coordinator move: 261 frames) was redone. `Delivered` keeps,
  per partition, the offset below which this worker's outputs are all acknowledged, across a
  loss or revocation; when the partition is assigned again and that offset is beyond the
  committed one, it is committed before the consumer fetches, so only the batch that was in
  hand (its outputs never produced) is redone.

(Committing after every batch as well, to shrink a kill -9's window below the auto-commit
interval, was tried and left out: with an `OffsetCommitRequest` in flight when the broker froze,
a consumer's group-coordinator connection stayed stuck after the broker came back, in 3 of 3
broker-freeze runs against 0 of 2 without it; docs/reliability.md.)

Why committing it is safe: a partition's records are consumed in order from where the
assignment started (a committed offset: everything before it was answered), and an offset
enters `Delivered` only when the outputs of its batch and of every earlier batch are
acknowledged (workers/loop/deliveries.py). A committed offset already further on (another
replica owned the partition meanwhile) is kept; when it cannot be read, nothing is committed
(the library's usual start: more duplicates, never a loss).
"""

from __future__ import annotations

import logging

from confluent_kafka import Consumer, KafkaException, TopicPartition

from workers.telemetry.logs import event

log = logging.getLogger("ontime.worker")

TP = tuple[str, int]

COMMITTED_TIMEOUT_S = 5.0  # reading the committed offsets inside the assign callback
RESUME_WAIT_S = 10.0  # for the acknowledgements of a partition assigned again, inside the callback


class Delivered:
    """Per partition, the next offset after the records whose outputs are all acknowledged."""

    def __init__(self) -> None:
        self._next: dict[TP, int] = {}

    def advance(self, newest: dict[TP, int]) -> None:
        for tp, offset in newest.items():
            if offset > self._next.get(tp, -1):
                self._next[tp] = offset

    def get(self, tp: TP) -> int | None:
        return self._next.get(tp)

    def resume(
        self, consumer: Consumer, partitions: list[TopicPartition], stage: str
    ) -> list[TopicPartition]:
        """Commit the delivered offset of each partition assigned again whose committed offset
        trails it (call inside the assign callback, before the library fetches the committed
        offsets); returns what was committed."""
        known = [
            TopicPartition(tp.topic, tp.partition)
            for tp in partitions
            if (tp.topic, tp.partition) in self._next
        ]
        if not known:
            return []
        try:
            committed = consumer.committed(known, timeout=COMMITTED_TIMEOUT_S)
        except KafkaException as exc:
            event(log, "resume-skipped", logging.WARNING, stage=stage, error=str(exc))
            return []
        ahead = [
            TopicPartition(tp.topic, tp.partition, self._next[(tp.topic, tp.partition)])
            for tp in committed
            if tp.error is None and self._next[(tp.topic, tp.partition)] > tp.offset
        ]
        if not ahead:
            return []
        try:
            consumer.commit(offsets=ahead, asynchronous=False)
        except KafkaException as exc:  # the coordinator moving: the library's start, duplicates
            event(log, "resume-skipped", logging.WARNING, stage=stage, error=str(exc))
            return []
        event(
            log,
            "resumed-at-delivered",
            stage=stage,
            partitions=",".join(f"{tp.topic}[{tp.partition}]@{tp.offset}" for tp in ahead),
        )
        return ahead
