"""Real frames through the real pipeline on a real broker: exactly one valid result per frame.

The labels must equal running the same three ONNX models offline on the same frames, whether
the stages run as three workers (three consumer groups, two Kafka hops between them), chained
in one process, or with two replicas of infer splitting its partitions.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from schemas.results import Result
from tests.integration.pipeline_kit import (
    Reader,
    WorkerThread,
    eval_clips,
    frames_from,
    fresh_pipeline,
    offline_reference,
    pipeline_overrides,
    record_count,
    send_frames,
    wait_for,
)
from workers.config.settings import OntimeSettings, load_settings
from workers.kafka.topics import create_topics, delete_topics, describe_topics

STAGES = ["preprocess", "infer", "postprocess"]


@pytest.fixture
def running(workers: list[WorkerThread]) -> list[WorkerThread]:
    """Workers a test starts (conftest's `workers`): all stopped at the end, even when the test fails."""
    return workers


def _run_and_check(settings: OntimeSettings, running: list[WorkerThread]) -> list[Result]:
    """Send every eval clip once; return the results after checking count, ids and labels."""
    frames = frames_from(eval_clips())
    assert len(frames) >= 40
    reference = offline_reference(settings, frames)
    topics = settings.pipeline.topics
    bootstrap = settings.kafka.bootstrap_servers
    reader = Reader(bootstrap, [topics.results, topics.late, topics.dlq], topics.partitions)
    try:
        sent = send_frames(bootstrap, topics.raw, frames)
        records = reader.read_until(lambda rs: len(rs) >= sent, timeout=180)
        for w in running:
            w.stop()
        # With every worker stopped nothing more can arrive: the topics hold exactly this.
        assert record_count(bootstrap, topics.results, topics.partitions) == sent
        assert record_count(bootstrap, topics.late, topics.partitions) == 0
        assert record_count(bootstrap, topics.dlq, topics.partitions) == 0
    finally:
        reader.close()
    results = [Result.model_validate(json.loads(r.value or b"")) for r in records]
    ids = Counter(r.id for r in results)
    assert set(ids) == set(reference)
    assert max(ids.values()) == 1
    # Batched inference may round differently from one frame at a time; a label may differ
    # only where the offline answer is a tie to within that rounding.
    differ = [r for r in results if r.label != reference[r.id].label]
    assert all(reference[r.id].margin < 1e-4 for r in differ), [
        (r.id, r.label, reference[r.id]) for r in differ
    ]
    assert all(abs(r.score - reference[r.id].score) < 1e-3 for r in results)
    by_id = {f.id: f for f in frames}
    for r, rec in zip(results, records, strict=True):
        assert r.pipeline == settings.pipeline.name
        assert rec.key == by_id[r.id].device.encode() and r.device == by_id[r.id].device
        assert rec.headers["ontime-id"] == r.id
        assert [s.stage for s in r.stages] == STAGES
        assert r.status == "ok"
    return results


def test_three_stage_workers_turn_every_frame_into_one_result(
    kafka_bootstrap: str, topic_factory: object, running: list[WorkerThread]
) -> None:
    settings = fresh_pipeline(kafka_bootstrap, topic_factory)  # type: ignore[arg-type]
    for stage in STAGES:
        running.append(WorkerThread(settings, [stage]))
    _run_and_check(settings, running)
    # Postprocess takes what piled up, mostly less than a full batch of cheap frames: those it
    # computes on its loop thread, without the hand-off to the compute thread and back.
    assert running[2].worker.inlined > 0


def test_idle_workers_report_zero_lag_on_every_partition(
    kafka_bootstrap: str, topic_factory: object, running: list[WorkerThread]
) -> None:
    """Lag is reported per owned partition every few seconds, and is 0 (age 0) once caught up."""
    settings = fresh_pipeline(kafka_bootstrap, topic_factory)  # type: ignore[arg-type]
    for stage in STAGES:
        running.append(WorkerThread(settings, [stage]))
    frames = frames_from(eval_clips()[:10])
    topics = settings.pipeline.topics
    send_frames(kafka_bootstrap, topics.raw, frames)
    infer = running[1].telemetry
    wanted = {(topics.features, p) for p in range(topics.partitions)}

    def caught_up() -> bool:
        with infer.lock:
            lags = dict(infer.lags)
        return set(lags) == wanted and all(v == (0, 0.0) for v in lags.values())

    wait_for(lambda: running[2].telemetry.settled_count == len(frames), timeout=120, what="all results")
    wait_for(caught_up, timeout=60, what="infer reporting zero lag on its three partitions")


def test_a_backlog_shows_as_lag_and_age_until_it_is_worked_off(
    kafka_bootstrap: str, topic_factory: object, running: list[WorkerThread]
) -> None:
    """The scaling signal: lag and the age of the oldest unprocessed frame, per partition."""
    settings = fresh_pipeline(  # type: ignore[arg-type]
        kafka_bootstrap, topic_factory, pipeline={"stages": {"preprocess": {"batch": {"max_size": 1}}}}
    )
    topics = settings.pipeline.topics
    worker = WorkerThread(settings, ["preprocess"], start_now=False, lag_every_s=0.1)
    running.append(worker)
    # One frame a batch, so the backlog lasts several lag reports even with the fast front end.
    frames = [f for wave in "abcdefgh" for f in frames_from(eval_clips(), prefix=wave)]
    send_frames(kafka_bootstrap, topics.raw, frames)  # a backlog before the worker starts
    worker.start()
    wanted = {(topics.raw, p) for p in range(topics.partitions)}

    def worked_off() -> bool:
        with worker.telemetry.lock:
            lags = dict(worker.telemetry.lags)
        return set(lags) == wanted and all(v == (0, 0.0) for v in lags.values())

    wait_for(worked_off, timeout=180, what="backlog worked off and reported")
    with worker.telemetry.lock:
        history = list(worker.telemetry.lag_history)
    backlog = [(lag, age) for _, _, lag, age in history if lag > 0]
    assert backlog, "no lag was ever reported while a backlog waited"
    assert all(lag <= len(frames) for lag, _ in backlog)
    assert any(age is not None and age > 0 for _, age in backlog)
    assert worker.telemetry.settled_count == len(frames)
    # Draining a backlog, the next batch starts computing while this one's outputs are produced.
    assert worker.worker.overlapped > 0


def test_stages_chained_in_one_process_give_the_same_results(
    kafka_bootstrap: str, topic_factory: object, running: list[WorkerThread]
) -> None:
    settings = fresh_pipeline(kafka_bootstrap, topic_factory)  # type: ignore[arg-type]
    running.append(WorkerThread(settings, STAGES))
    results = _run_and_check(settings, running)
    topics = settings.pipeline.topics
    # The chain hands tensors over in memory: nothing went through the intermediate topics.
    assert record_count(kafka_bootstrap, topics.features, topics.partitions) == 0
    assert record_count(kafka_bootstrap, topics.scores, topics.partitions) == 0
    assert all(r.stages[1].queue_ms < 1000 for r in results)


def test_chain_under_the_kip848_consumer_group_protocol(
    kafka_bootstrap: str, topic_factory: object, running: list[WorkerThread]
) -> None:
    """`kafka.group_protocol: consumer` (broker-side assignment) serves the same results."""
    settings = fresh_pipeline(kafka_bootstrap, topic_factory)  # type: ignore[arg-type]
    settings = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"group_protocol": "consumer"})}
    )
    running.append(WorkerThread(settings, STAGES))
    _run_and_check(settings, running)


def test_two_infer_replicas_split_the_partitions(
    kafka_bootstrap: str, topic_factory: object, running: list[WorkerThread]
) -> None:
    settings = fresh_pipeline(kafka_bootstrap, topic_factory, partitions=4)  # type: ignore[arg-type]
    first = WorkerThread(settings, ["infer"])
    second = WorkerThread(settings, ["infer"])
    running.extend([first, second])

    def split() -> bool:
        a, b = set(first.telemetry.assigned), set(second.telemetry.assigned)
        return bool(a) and bool(b) and not (a & b) and len(a | b) == 4

    wait_for(split, timeout=90, what="two infer replicas sharing 4 partitions")
    for stage in ("preprocess", "postprocess"):
        running.append(WorkerThread(settings, [stage]))
    _run_and_check(settings, running)
    # Both replicas did real work, and between them every frame exactly once.
    assert first.telemetry.settled_count > 0 and second.telemetry.settled_count > 0
    assert first.telemetry.settled_count + second.telemetry.settled_count == len(eval_clips())


def test_topics_create_is_idempotent_and_waits_for_leaders(kafka_bootstrap: str) -> None:
    name = f"t{uuid.uuid4().hex[:10]}"
    settings = load_settings("acoustic", pipeline_overrides(name, kafka_bootstrap, partitions=2))
    try:
        assert sorted(create_topics(settings)) == sorted(settings.pipeline.topics.all())
        assert create_topics(settings) == []
        rows = describe_topics(settings)
        topics = settings.pipeline.topics
        assert [(t, parts) for t, parts, _ in rows] == [(t, topics.config_of(t)[0]) for t in topics.all()]
        assert topics.config_of(topics.raw)[0] == 2 and topics.config_of(topics.control)[0] == 1
        # The configs every creator gets (CLI, demo, bench, tests): checked on the broker itself.
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        wanted = {t: topics.config_of(t)[1] for t in topics.all()}
        resources = [ConfigResource(ResourceType.TOPIC, t) for t in wanted]
        for resource, future in admin.describe_configs(resources).items():
            got = {k: v.value for k, v in future.result(timeout=30).items()}
            assert {k: got[k] for k in wanted[resource.name]} == wanted[resource.name], resource.name
        assert wanted[topics.results] == {"message.timestamp.type": "LogAppendTime"}
        assert wanted[topics.control]["cleanup.policy"] == "compact"
    finally:
        deleted = delete_topics(settings)
    assert sorted(deleted) == sorted(settings.pipeline.topics.all())
