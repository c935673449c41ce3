"""A frame without `ontime-id` keeps one id however often it is processed: reprocessing after a
restart (or a rewind) yields duplicates that "drop duplicates by id" recognises."""

from __future__ import annotations

import json
from collections import Counter

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from tests.integration.pipeline_kit import PCM, Reader, WorkerThread, eval_clips, fresh_pipeline
from tests.integration.test_battery import Sender
from workers.messages import headers as h
from workers.messages.envelope import Source, derived_id


def test_a_reprocessed_frame_without_id_keeps_its_id(kafka_bootstrap: str, topic_factory: object) -> None:
    settings = fresh_pipeline(kafka_bootstrap, topic_factory)  # type: ignore[arg-type]
    topics = settings.pipeline.topics
    sender = Sender(kafka_bootstrap)
    coords = []
    for i, clip in enumerate(eval_clips()[:3]):
        pcm = clip.pcm.astype("<i2").tobytes()
        coords += sender.send(
            topics.raw, i % topics.partitions, f"dev-{i}", pcm, [(h.CONTENT_TYPE, PCM.encode())]
        )
    expected = {derived_id(Source(t, p, o, 0)) for t, p, o in coords}

    reader = Reader(kafka_bootstrap, [topics.results, topics.dlq], topics.partitions)
    try:
        worker = WorkerThread(settings, ["preprocess", "infer", "postprocess"])
        reader.read_until(lambda rs: len(rs) >= 3, timeout=120)
        worker.stop()
        # Rewind the stage's committed offsets, as a crash before the commit would.
        group = settings.pipeline.group_id("preprocess")
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        rewind = [TopicPartition(topics.raw, p, 0) for p in range(topics.partitions)]
        for future in admin.alter_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, rewind)]
        ).values():
            future.result(timeout=30)
        worker = WorkerThread(settings, ["preprocess", "infer", "postprocess"])
        out = reader.read_until(lambda rs: len(rs) >= 6, timeout=120)
        worker.stop()
    finally:
        reader.close()
    assert all(r.topic == topics.results for r in out)
    ids = Counter(json.loads(r.value or b"")["id"] for r in out)
    assert set(ids) == expected and set(ids.values()) == {2}, ids
