"""Faults on the real broker: an oversized frame, a bad model deploy, exactly-once across kill -9.

Each test failed before its fix: a 1 MB frame crash-looped preprocess (MSG_SIZE_TOO_LARGE at
produce); a model that fails on every input dead-lettered the whole topic; at-least-once
re-emitted the batch in hand after kill -9.
"""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from confluent_kafka import Producer
from onnx import TensorProto, helper

from schemas.card import ModelCard, sha256_of
from schemas.errors import DLQ_REASONS
from tests.integration.pipeline_kit import (
    PCM,
    Reader,
    WorkerProcess,
    WorkerThread,
    alive,
    committed_ids,
    eval_clips,
    frames_from,
    fresh_pipeline,
    holds_for,
    send_frames,
    wait_assigned_stages,
    wait_for,
)
from workers.loop.outputs import TOO_LARGE
from workers.loop.worker import StageWorker
from workers.messages import headers as h
from workers.stages.model import variant_dir
from workers.stages.stage import build_stage

TopicFactory = Callable[..., str]


def test_a_frame_too_large_to_copy_is_a_dead_letter_reference_and_the_worker_goes_on(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    settings = fresh_pipeline(kafka_bootstrap, topic_factory, partitions=1)
    topics = settings.pipeline.topics
    good = frames_from(eval_clips()[:6], prefix="good")
    worker = WorkerThread(settings, ["preprocess"])
    reader = Reader(kafka_bootstrap, [topics.features, topics.dlq], partitions=1)
    try:
        wait_assigned_stages(settings, ["preprocess"], 90.0)
        send_frames(kafka_bootstrap, topics.raw, good[:3])
        big = b"\x01\x00" * 520_000  # 1,040,000 bytes: the broker takes it, its DLQ copy cannot fit
        device = Producer({"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 2_000_000})
        device.produce(
            topics.raw, key=b"mic-big", value=big, headers=[(h.ID, b"huge"), (h.CONTENT_TYPE, PCM)]
        )
        assert device.flush(30) == 0
        send_frames(kafka_bootstrap, topics.raw, good[3:])
        records = reader.read_until(lambda rs: len(rs) >= 7)
        holds_for(alive(worker), 1.0, "no crash")  # nothing beyond: no crash loop re-emitting outputs
        records = reader.read_until(lambda rs: True)
    finally:
        worker.stop()  # raises if the worker died
        reader.close()
    assert sorted(r.headers[h.ID] for r in records if r.topic == topics.features) == sorted(
        f.id for f in good
    )
    (dead,) = [r for r in records if r.topic == topics.dlq]
    assert dead.headers[h.ID] == "huge" and dead.value is None
    assert dead.headers[h.ERROR_REASON] in DLQ_REASONS  # why it can never be processed (its length)
    assert dead.headers[h.ERROR_REASON] != TOO_LARGE
    assert (dead.headers[h.SOURCE_TOPIC], dead.headers[h.SOURCE_OFFSET]) == (topics.raw, "3")
    assert "not produced" in dead.headers[h.ERROR_DETAIL]


def _broken_copy(tmp: Path, variant: str) -> None:
    """A deploy gone wrong: the same inputs and outputs, a graph that fails on every run."""
    source = variant_dir(variant)
    target = variant_dir(variant, tmp)
    shutil.copytree(source, target)
    card = ModelCard.load(target)
    inp, out = card.inputs[0], card.outputs[0]
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", [inp.name], ["flat"]),
            helper.make_node("Reshape", ["flat", "impossible"], [out.name]),
        ],
        "broken",
        [helper.make_tensor_value_info(inp.name, TensorProto.FLOAT, ["N", *inp.shape[1:]])],
        [helper.make_tensor_value_info(out.name, TensorProto.FLOAT, ["N", *out.shape[1:]])],
        [helper.make_tensor("impossible", TensorProto.INT64, [2], np.array([-1, 7919], dtype=np.int64))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, target / card.file)
    data = card.model_dump(mode="json")
    data["sha256"] = sha256_of(target / card.file)
    (target / "card.json").write_text(ModelCard.model_validate(data).model_dump_json(indent=2))


def test_a_model_failing_on_every_frame_opens_the_circuit_instead_of_draining_the_topic(
    kafka_bootstrap: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    settings = fresh_pipeline(kafka_bootstrap, topic_factory, partitions=1)
    topics, spec = settings.pipeline.topics, settings.pipeline.stages["infer"]
    for variant in {spec.model, spec.fallback} - {None}:
        _broken_copy(tmp_path, str(variant))
    # It loads and its checksum matches (the deploy went through); it fails on live traffic.
    stages = [build_stage(settings.pipeline, "infer", warm=False, models_dir=tmp_path)]
    features = WorkerThread(settings, ["preprocess"])
    infer = StageWorker(settings, stages)
    sent = 400
    frames = frames_from(eval_clips(), prefix="f")

    thread = threading.Thread(target=infer.run, daemon=True)  # the real loop, broken models
    thread.start()
    reader = Reader(kafka_bootstrap, [topics.dlq, topics.scores], partitions=1)
    try:
        wait_assigned_stages(settings, ["preprocess", "infer"], 90.0)
        send_frames(kafka_bootstrap, topics.raw, [frames[i % len(frames)] for i in range(sent)])
        wait_for(lambda: infer.breaker.open, 120.0, "the circuit opens")
        reader.read_until(lambda rs: len(rs) >= infer.breaker.min_frames, timeout=60)
        holds_for(lambda: infer.breaker.open, 2.0, "the circuit stays open")  # nothing more dead-lettered
        records = reader.read_until(lambda rs: True)
        dead = [r for r in records if r.topic == topics.dlq]
    finally:
        infer.stop()
        thread.join(60)
        features.stop()
        reader.close()
    assert not [r for r in records if r.topic == topics.scores]
    assert {r.headers[h.ERROR_REASON] for r in dead} == {"model-error"}
    assert infer.breaker.min_frames <= len(dead) <= infer.breaker.min_frames + 2 * infer.batch.max_size
    assert len(dead) < sent  # the rest waits on acoustic.features for the fix, not in the DLQ


def test_exactly_once_survives_kill_9_with_no_duplicates_and_nothing_lost(
    kafka_bootstrap: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    settings = fresh_pipeline(
        kafka_bootstrap,
        topic_factory,
        partitions=2,
        pipeline={
            "skip_ahead": False,  # every frame then comes out with its own id, late ones too
            "stages": {s: {"exactly_once": True} for s in ("preprocess", "infer", "postprocess")},
        },
    )
    topics = settings.pipeline.topics
    flags = ["--set", "pipeline.skip_ahead=false"] + [
        item
        for s in ("preprocess", "infer", "postprocess")
        for item in ("--set", f"pipeline.stages.{s}.exactly_once=true")
    ]
    frames = frames_from(eval_clips(), prefix="x")
    sent = 300
    batch = [frames[i % len(frames)] for i in range(sent)]
    batch = [type(f)(f"x-{i:04d}", f.device, f.label, f.payload) for i, f in enumerate(batch)]
    rest = WorkerProcess(settings, "infer,postprocess", tmp_path / "rest.log", flags)
    first = WorkerProcess(settings, "preprocess", tmp_path / "first.log", flags)
    try:
        rest.wait_started()
        first.wait_started()
        wait_assigned_stages(settings, ["preprocess", "infer"], 90.0)
        send_frames(kafka_bootstrap, topics.raw, batch)
        wait_for(lambda: _count(kafka_bootstrap, topics.results) >= 40, 120.0, "results flowing")
        first.proc.kill()  # kill -9 mid-stream, transactions open
        first.proc.wait(30)
        second = WorkerProcess(settings, "preprocess", tmp_path / "second.log", flags)
        second.wait_started()
        ids = committed_ids(
            kafka_bootstrap, [topics.results, topics.late, topics.dlq], lambda ids: len(ids) >= sent, 180.0
        )
    finally:
        for proc in (rest, first):
            proc.stop()
        if "second" in locals():
            second.stop()
    counts = Counter(ids)
    strays = Counter(i for i in ids if i.startswith("?"))
    assert set(counts) == {f.id for f in batch}, (len({f.id for f in batch} - set(counts)), strays)
    assert max(counts.values()) == 1, [i for i, n in counts.items() if n > 1][:10]


def _count(bootstrap: str, topic: str) -> int:
    return len(committed_ids(bootstrap, [topic], lambda ids: True, 2.0))
