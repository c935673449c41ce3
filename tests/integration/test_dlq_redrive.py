"""`ontime dlq redrive` on the real broker: frames a misconfigured preprocess dead-lettered are
re-driven after the fix and become results; a second run finds nothing left to do."""

from __future__ import annotations

from pathlib import Path

from tests.integration.pipeline_kit import (
    Reader,
    WorkerThread,
    eval_clips,
    frames_from,
    fresh_pipeline,
    send_frames,
)
from workers.config.spec import FrameSpec
from workers.tools.dlq import redrive

FRAMES = 12


def test_dead_letters_come_back_as_results_after_the_fix(
    kafka_bootstrap: str, topic_factory: object, tmp_path: Path
) -> None:
    # The broken deploy: a pipeline file that expects half-second frames from one-second devices.
    broken = fresh_pipeline(
        kafka_bootstrap,
        topic_factory,  # type: ignore[arg-type]
        pipeline={"frame": {"params": {"samples": 8000}}},
    )
    topics = broken.pipeline.topics
    frames = frames_from(eval_clips()[:FRAMES], prefix="dl")
    ids = {f.id for f in frames}
    reader = Reader(kafka_bootstrap, [topics.results, topics.dlq], topics.partitions)
    workers = [WorkerThread(broken, ["preprocess"])]
    try:
        send_frames(kafka_bootstrap, topics.raw, frames)
        reader.read_until(lambda rs: len([r for r in rs if r.topic == topics.dlq]) >= FRAMES, timeout=180)
        workers[0].stop()
        assert {r.headers["ontime-source-topic"] for r in reader.by_topic(topics.dlq)} == {topics.raw}

        frame = broken.pipeline.frame
        fixed_frame = FrameSpec(
            content_type=frame.content_type, decoder=frame.decoder, params={**frame.params, "samples": 16000}
        )
        fixed = broken.model_copy(
            update={"pipeline": broken.pipeline.model_copy(update={"frame": fixed_frame})}
        )
        assert redrive(fixed, dry_run=True).redriven[topics.raw] == FRAMES  # counts, changes nothing
        workers = [WorkerThread(fixed, [s]) for s in ("preprocess", "infer", "postprocess")]
        report = redrive(fixed)
        print(report.render())
        assert report.read == FRAMES and report.redriven[topics.raw] == FRAMES
        records = reader.read_until(lambda rs: len([r for r in rs if r.topic == topics.results]) >= FRAMES)
        assert {r.headers["ontime-id"] for r in records if r.topic == topics.results} == ids
        assert redrive(fixed).read == 0  # progress was committed: nothing is re-driven twice
    finally:
        reader.close()
        for w in workers:
            w.stop()
