"""The at-least-once bounds of workers/loop/resume.py, with a scripted consumer.

The real broker proves them end to end (tests/integration/test_broker_outage.py: a lost
assignment redoes at most one batch); here each rule is pinned down on its own.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from workers.loop.resume import Delivered


class Scripted:
    """A consumer that remembers commits and answers `committed` from a table."""

    def __init__(self, committed: dict[tuple[str, int], int] | None = None, fail: bool = False) -> None:
        self.table = committed or {}
        self.fail = fail
        self.commits: list[tuple[list[tuple[str, int, int]], bool]] = []

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        if self.fail:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "scripted"))
        return [
            TopicPartition(p.topic, p.partition, self.table.get((p.topic, p.partition), -1001))
            for p in partitions
        ]

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.commits.append(([(o.topic, o.partition, o.offset) for o in offsets], asynchronous))


def _as(consumer: Scripted) -> Any:
    return consumer


def test_delivered_only_moves_forward() -> None:
    d = Delivered()
    d.advance({("t", 0): 10, ("t", 1): 5})
    d.advance({("t", 0): 7})  # a late-released older batch never moves it back
    assert d.get(("t", 0)) == 10 and d.get(("t", 1)) == 5 and d.get(("t", 2)) is None


def test_a_partition_assigned_again_starts_from_what_was_delivered() -> None:
    d = Delivered()
    d.advance({("t", 0): 40, ("t", 1): 12})
    consumer = Scripted({("t", 0): 25, ("t", 1): 30})  # t[1]: another replica got further
    done = d.resume(
        _as(consumer), [TopicPartition("t", 0), TopicPartition("t", 1), TopicPartition("t", 2)], "s"
    )
    assert [(t.topic, t.partition, t.offset) for t in done] == [("t", 0, 40)]
    assert consumer.commits == [([("t", 0, 40)], False)]  # synchronous: before the library fetches


def test_committed_offsets_unreadable_means_the_usual_start_never_a_guess() -> None:
    d = Delivered()
    d.advance({("t", 0): 40})
    consumer = Scripted(fail=True)
    assert d.resume(_as(consumer), [TopicPartition("t", 0)], "s") == []
    assert consumer.commits == []
