"""`ontime offsets reset` on the real broker: a stopped stage replays from an offset or a time."""

from __future__ import annotations

import time

import pytest

from tests.integration.pipeline_kit import (
    Reader,
    WorkerThread,
    eval_clips,
    frames_from,
    fresh_pipeline,
    send_frames,
    wait_for,
)
from workers.errors import BrokerError
from workers.tools.offsets import plan, reset, show

FRAMES = 10


def _next_ms(after: int) -> int:
    """The wall clock's first millisecond after `after` (record timestamps are milliseconds)."""
    wait_for(lambda: int(time.time() * 1000) > after, 1.0, "the clock ticks")
    return int(time.time() * 1000)


def test_a_stopped_stage_replays_from_a_time_and_a_running_one_refuses(
    kafka_bootstrap: str, topic_factory: object
) -> None:
    settings = fresh_pipeline(kafka_bootstrap, topic_factory, partitions=2)  # type: ignore[arg-type]
    topics = settings.pipeline.topics
    first = frames_from(eval_clips()[:FRAMES], prefix="old")
    second = frames_from(eval_clips()[:FRAMES], prefix="new")
    reader = Reader(kafka_bootstrap, [topics.features], topics.partitions)
    worker = WorkerThread(settings, ["preprocess"])
    try:
        send_frames(kafka_bootstrap, topics.raw, first)
        split_ms = _next_ms(int(time.time() * 1000))  # after every first-wave timestamp
        _next_ms(split_ms)  # and every second-wave timestamp after it
        send_frames(kafka_bootstrap, topics.raw, second)
        reader.read_until(lambda rs: len(rs) >= 2 * FRAMES)
        with pytest.raises(BrokerError, match="Stop every preprocess worker"):
            reset(settings, "preprocess", plan(settings, "preprocess", to="earliest"))
        worker.stop()
        assert sum(o.lag for o in show(settings, "preprocess")) == 0

        targets = plan(settings, "preprocess", to_time_ms=split_ms)
        assert sum(o.high - o.target for o in targets if o.target is not None) == FRAMES
        reset(settings, "preprocess", targets)
        assert sum(o.lag for o in show(settings, "preprocess")) == FRAMES

        worker = WorkerThread(settings, ["preprocess"])
        records = reader.read_until(lambda rs: len(rs) >= 3 * FRAMES)
    finally:
        reader.close()
        worker.stop()
    replayed = [r.headers["ontime-id"] for r in records[2 * FRAMES :]]
    assert sorted(replayed) == sorted(f.id for f in second)  # exactly the frames after the time
