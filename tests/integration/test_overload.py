"""Overload on the real broker: a hopeless backlog is skipped by seeking, and accounted frame for frame;
latency reports travel on the control topic and shrink the reserve upstream."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from confluent_kafka import Producer

from schemas.errors import ErrorRecord
from tests.integration.pipeline_kit import (
    Reader,
    WorkerThread,
    alive,
    eval_clips,
    frames_from,
    fresh_pipeline,
    holds_for,
    wait_assigned_stages,
    wait_for,
)
from workers.loop.skip import MIN_SKIP, SKIPPED
from workers.messages import headers as h

TopicFactory = Callable[..., str]
PCM = "audio/pcm;format=s16le;rate=16000;channels=1"


def _publish(bootstrap: str, topic: str, count: int, prefix: str, timestamp_ms: int | None) -> None:
    """Real frames; with `timestamp_ms` the records claim that creation time (an old backlog)."""
    frames = frames_from(eval_clips(), prefix=prefix)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for i in range(count):
        f = frames[i % len(frames)]
        headers = [(h.ID, f"{prefix}-{i:05d}".encode()), (h.CONTENT_TYPE, PCM.encode())]
        if timestamp_ms is None:
            producer.produce(topic, key=f.device.encode(), value=f.payload, headers=headers)
        else:
            producer.produce(
                topic, key=f.device.encode(), value=f.payload, headers=headers, timestamp=timestamp_ms
            )
    assert producer.flush(60) == 0


def test_a_hopeless_backlog_is_skipped_by_seeking_and_accounted_frame_for_frame(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    settings = fresh_pipeline(kafka_bootstrap, topic_factory, partitions=1, pipeline={"budget_ms": 250})
    topics = settings.pipeline.topics
    old, fresh = 600, 20
    _publish(kafka_bootstrap, topics.raw, old, "old", timestamp_ms=int(time.time() * 1000) - 60_000)
    worker = WorkerThread(settings, ["preprocess"])
    reader = Reader(kafka_bootstrap, [topics.features, topics.late, topics.dlq], partitions=1)
    try:
        wait_assigned_stages(settings, ["preprocess"], 90.0)

        def late_frames(records: list) -> int:  # type: ignore[type-arg]
            return sum(
                ErrorRecord.from_headers("late", r.headers).count for r in records if r.topic == topics.late
            )

        reader.read_until(lambda rs: late_frames(rs) + len(rs) - _late_records(rs, topics.late) >= old)
        _publish(kafka_bootstrap, topics.raw, fresh, "fresh", timestamp_ms=None)
        records = reader.read_until(
            lambda rs: late_frames(rs) + len(rs) - _late_records(rs, topics.late) >= old + fresh
        )
        holds_for(alive(worker), 1.0, "the worker runs on")  # anything beyond the count shows up now
        records = reader.read_until(lambda rs: True)
    finally:
        worker.stop()
        reader.close()

    late = [ErrorRecord.from_headers("late", r.headers) for r in records if r.topic == topics.late]
    emitted = [r for r in records if r.topic == topics.features]
    dlq = [r for r in records if r.topic == topics.dlq]
    assert sum(e.count for e in late) + len(emitted) + len(dlq) == old + fresh  # exact accounting
    skipped = [e for e in late if e.reason == SKIPPED]
    assert skipped and all(e.count >= MIN_SKIP for e in skipped)
    # The skipped ranges are disjoint, inside the backlog, and no skipped offset was also answered.
    covered = {o for e in skipped for o in range(e.source_offset, e.source_offset + e.count)}
    assert len(covered) == sum(e.count for e in skipped) and max(covered) < old
    by_offset = {int(r.headers.get(h.SOURCE_OFFSET, "-1")) for r in records if r.topic == topics.late}
    assert not (covered - {e.source_offset for e in skipped}) & by_offset
    stage = worker.worker.stages[0]
    assert stage.model_rows_run <= old + fresh - len(covered)  # skipped frames never reached a model
    assert {r.headers[h.ID] for r in emitted} <= {f"fresh-{i:05d}" for i in range(fresh)}
    assert all(r.value is None for r in records if r.topic == topics.late)  # late by reference
    assert worker.worker.counts["skipped"] == len(covered)


def _late_records(records: list, late_topic: str) -> int:  # type: ignore[type-arg]
    return sum(1 for r in records if r.topic == late_topic)


def test_latency_reports_reach_the_control_topic_and_the_upstream_board(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    settings = fresh_pipeline(kafka_bootstrap, topic_factory, partitions=1, pipeline={"budget_ms": 5_000})
    topics = settings.pipeline.topics
    pre = WorkerThread(settings, ["preprocess"])
    rest = WorkerThread(settings, ["infer", "postprocess"])
    reader = Reader(kafka_bootstrap, [topics.control, topics.results], partitions=1)
    try:
        wait_assigned_stages(settings, ["preprocess", "infer"], 90.0)
        for batch in range(6):
            _publish(kafka_bootstrap, topics.raw, 20, f"b{batch}", timestamp_ms=None)
        reports = reader.read_until(
            lambda rs: (
                {json.loads(r.value)["stage"] for r in rs if r.topic == topics.control and r.value}
                >= {"infer", "postprocess"}
            )
        )
        wait_for(lambda: pre.worker.stages[0].reserve.measured(), 30.0, "preprocess plans with measurements")
        reserve = pre.worker.stages[0].reserve
        measured = reserve.reserve_ms()
    finally:
        pre.stop()
        rest.stop()
        reader.close()
    keys = {r.key for r in reports if r.topic == topics.control}
    assert all(k is not None and k.startswith(b"latency/") for k in keys)
    assert measured < reserve.static_ms  # the measured downstream is faster than its shares
