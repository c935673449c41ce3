"""A partition that moves away while the worker holds its input, and comes back after the hold
ended, is consumed again.

librdkafka keeps a partition's pause flag while the partition is away: the worker paused it for
the hold (broker outage, open circuit), lost or gave it up in a rebalance, resumed what it still
had when the hold ended, and then got it back, still paused, for good. It happened on the real
broker when a broker outage outlasted the 10 s session (test_broker_outage.py stalled).
"""

from __future__ import annotations

import queue
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer

from tests.integration.conftest import TopicFactory
from tests.integration.pipeline_kit import (
    Reader,
    Recorder,
    WorkerThread,
    eval_clips,
    frames_from,
    fresh_pipeline,
    send_frames,
    wait_for,
)
from workers.messages import headers as h


class OnLoop(Recorder):
    """Runs what the test queues on the worker's own thread, at the top of a turn: a librdkafka
    consumer is not to be driven from two threads (assignment() from the test thread blocked)."""

    def __init__(self) -> None:
        super().__init__()
        self.todo: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()

    def poll_turned(self) -> None:
        while not self.todo.empty():
            self.todo.get()()


def test_a_partition_returning_after_a_hold_ended_is_consumed_again(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    settings = fresh_pipeline(kafka_bootstrap, topic_factory, partitions=2)
    topics = settings.pipeline.topics
    loop = OnLoop()
    worker = WorkerThread(settings, ["preprocess"], telemetry=loop)
    other = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": settings.pipeline.group_id("preprocess"),
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": 6000,
            "client.id": f"intruder-{uuid.uuid4().hex[:6]}",
        }
    )
    try:
        wait_for(lambda: len(worker.worker._owned) == 2, 90.0, "worker owns both partitions")
        loop.todo.put(lambda: worker.worker._hold("held by the test"))  # both partitions paused
        wait_for(lambda: worker.worker._holding is not None, 30.0, "input held")
        other.subscribe([topics.raw])

        def moved() -> bool:
            other.poll(0.1)  # serves the other member's rebalance
            return len(worker.worker._owned) == 1

        wait_for(moved, 90.0, "one partition moved to the other member")
        loop.todo.put(worker.worker._resume_input)  # the hold ends while that partition is away
        wait_for(lambda: worker.worker._holding is None, 30.0, "hold ended")
        other.close()  # it comes back to the worker
        wait_for(lambda: len(worker.worker._owned) == 2, 90.0, "the partition came back")
        frames = frames_from(eval_clips(), prefix=f"h{uuid.uuid4().hex[:4]}")[:24]
        send_frames(kafka_bootstrap, topics.raw, frames)
        reader = Reader(kafka_bootstrap, [topics.features, topics.late, topics.dlq], partitions=2)
        try:
            want = {f.id for f in frames}
            records = reader.read_until(lambda rs: want <= {r.headers.get(h.ID) for r in rs}, timeout=90)
        finally:
            reader.close()
    finally:
        worker.stop()
    assert want <= {r.headers.get(h.ID) for r in records}
    assert {r.partition for r in records if r.topic == topics.features} == {0, 1}  # both consumed
