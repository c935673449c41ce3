"""A stage stopped mid-stream and restarted resumes from its committed offset: no frame is lost.

infer runs as an `ontime worker` subprocess between preprocess and postprocess threads. It
answers a first wave of frames (committed), is stopped — gracefully (SIGTERM) or killed
(SIGKILL) — as soon as it has started on a second wave, and a third wave arrives while it is
down; a restarted infer must answer all three. The restart reprocesses exactly the records
after the group's committed offset: after SIGTERM that is nothing it had done (everything
delivered was committed on the way out), after SIGKILL the uncommitted tail (counted).
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from schemas.errors import ErrorRecord
from tests.integration.pipeline_kit import (
    Frame,
    Reader,
    Record,
    WorkerProcess,
    WorkerThread,
    committed_total,
    eval_clips,
    frames_from,
    fresh_pipeline,
    record_count,
    send_frames,
    wait_for,
)
from workers.config.settings import OntimeSettings
from workers.loop.worker import DeliveryFailed

# Small batches: the first wave takes many produce/commit rounds. A short session timeout lets
# the killed member's partitions move to the restarted one in seconds, not the default 45 s.
FLAGS = ["--set", "pipeline.stages.infer.batch.max_size=4", "--set", "worker.session_timeout_ms=6000"]


@pytest.fixture
def threads(workers: list[WorkerThread]) -> list[WorkerThread]:
    """Stage workers in threads of the test process (conftest's `workers`)."""
    return workers


@pytest.fixture
def processes() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for p in started:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait(30)


def _scores(settings: OntimeSettings) -> int:
    t = settings.pipeline.topics
    return record_count(settings.kafka.bootstrap_servers, t.scores, t.partitions)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_infer_restarted_mid_stream_resumes_from_its_committed_offset(
    how: signal.Signals,
    kafka_bootstrap: str,
    topic_factory: object,
    tmp_path: Path,
    threads: list[WorkerThread],
    processes: list[WorkerProcess],
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = fresh_pipeline(  # type: ignore[arg-type]
        kafka_bootstrap, topic_factory, pipeline={"stages": {"infer": {"batch": {"max_size": 4}}}}
    )
    topics = settings.pipeline.topics
    clips = eval_clips()
    waves = [frames_from(clips, prefix=p) for p in "abc"]
    everyone = {f.id for wave in waves for f in wave}
    n = len(clips)
    for stage in ("preprocess", "postprocess"):
        threads.append(WorkerThread(settings, [stage]))
    reader = Reader(kafka_bootstrap, [topics.results], topics.partitions)
    try:
        infer = WorkerProcess(settings, "infer", tmp_path / "infer-1.log", FLAGS)
        processes.append(infer)
        infer.wait_started()
        # Wave a: scored and committed (auto-commit), so the group has a real position to resume.
        send_frames(kafka_bootstrap, topics.raw, waves[0])
        wait_for(lambda: committed_total(settings, "infer") == n, timeout=120, what="wave a committed")
        # Wave b: stop infer as soon as it has started on it, with work delivered but not committed.
        send_frames(kafka_bootstrap, topics.raw, waves[1])
        wait_for(lambda: _scores(settings) > n, timeout=120, what="wave b under way")
        infer.proc.send_signal(how)
        code = infer.proc.wait(60)
        assert code == (0 if how == signal.SIGTERM else -signal.SIGKILL), infer.log_text()
        # Wave c: the stream goes on while infer is down.
        send_frames(kafka_bootstrap, topics.raw, waves[2])
        before = _scores(settings)
        committed = committed_total(settings, "infer")
        assert n <= committed <= before
        if how == signal.SIGTERM:
            assert "stopped" in infer.log_text()
            assert committed == before, "a graceful stop commits everything it delivered"

        again = WorkerProcess(settings, "infer", tmp_path / "infer-2.log", FLAGS)
        processes.append(again)
        records = reader.read_until(lambda rs: {r.headers["ontime-id"] for r in rs} >= everyone, timeout=180)
        assert again.stop() == 0, again.log_text()
    finally:
        reader.close()
    after = _scores(settings)
    # The restart redid exactly the records after the committed offset, no more, no fewer.
    assert after - before == 3 * n - committed
    duplicates = after - len(everyone)
    assert duplicates == before - committed
    assert committed_total(settings, "infer") == 3 * n
    per_id = Counter(r.headers["ontime-id"] for r in records)
    assert set(per_id) == everyone
    if how == signal.SIGTERM:
        assert duplicates == 0 and max(per_id.values()) == 1
    with capsys.disabled():
        print(
            f"\n[{how.name}] frames={len(everyone)} scored-before-restart={before} committed={committed} "
            f"reprocessed={after - before} duplicates={duplicates}"
        )


def test_a_replica_joining_mid_stream_takes_partitions_without_loss_or_duplicates(
    kafka_bootstrap: str,
    topic_factory: object,
    threads: list[WorkerThread],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Cooperative rebalance while preprocess is busy with big batches: each frame exactly once.

    The revoked partitions' batch in hand is delivered and committed inside the revoke
    callback, so the new owner starts right after it: no frame is lost and none is redone.
    """
    settings = fresh_pipeline(  # type: ignore[arg-type]
        kafka_bootstrap,
        topic_factory,
        partitions=4,
        pipeline={"stages": {"preprocess": {"batch": {"max_size": 256, "max_wait_ms": 20}}}},
    )
    topics = settings.pipeline.topics
    clips = eval_clips()
    first = WorkerThread(settings, ["preprocess"])
    threads.append(first)
    joiner = WorkerThread(settings, ["preprocess"], start_now=False)  # models loaded, not in the group yet
    threads.append(joiner)
    for stage in ("infer", "postprocess"):
        threads.append(WorkerThread(settings, [stage]))
    wait_for(lambda: len(first.telemetry.assigned) == 4, timeout=90, what="first replica owns all partitions")
    reader = Reader(kafka_bootstrap, [topics.results], topics.partitions)
    frames: list[Frame] = []
    try:
        # Keep the stream flowing, wave after wave, until the joiner has taken over real work:
        # the rebalance then happens while the first replica is busy.
        deadline = time.monotonic() + 180
        while joiner.telemetry.settled_count == 0 or len(frames) < 4 * len(clips):
            assert time.monotonic() < deadline, "the joining replica never got to work"
            wave = frames_from(clips, prefix=f"w{len(frames) // len(clips)}")
            send_frames(kafka_bootstrap, topics.raw, wave)
            frames += wave
            if len(frames) == 2 * len(clips):
                joiner.start()
        records = reader.read_until(lambda rs: len(rs) >= len(frames), timeout=240)
        for w in threads:
            w.stop()
        threads.clear()
        total = record_count(kafka_bootstrap, topics.results, topics.partitions)
    finally:
        reader.close()
    per_id = Counter(r.headers["ontime-id"] for r in records)
    assert set(per_id) == {f.id for f in frames}
    assert total == len(frames), f"{total - len(frames)} duplicates after a cooperative rebalance"
    assert first.telemetry.settled_count + joiner.telemetry.settled_count == len(frames)
    with capsys.disabled():
        print(
            f"\n[rebalance] frames={len(frames)} first={first.telemetry.settled_count} "
            f"joiner={joiner.telemetry.settled_count} revoked-mid-batch={first.worker.revoked_mid_batch}"
        )


def test_a_failed_delivery_stops_the_worker_without_storing_its_offsets(
    kafka_bootstrap: str, topic_factory: object, threads: list[WorkerThread]
) -> None:
    """Outputs that Kafka refuses must not let their inputs be committed: stop loudly, lose nothing."""
    settings = fresh_pipeline(kafka_bootstrap, topic_factory)  # type: ignore[arg-type]
    topics = settings.pipeline.topics
    # The broker does not auto-create topics, so a features topic that does not exist fails delivery.
    broken = settings.model_copy(
        update={
            "pipeline": settings.pipeline.model_copy(
                update={"topics": topics.model_copy(update={"features": f"{topics.features}.missing"})}
            ),
            "kafka": settings.kafka.model_copy(update={"extra": {"message.timeout.ms": "3000"}}),
        }
    )
    frames = frames_from(eval_clips()[:5])
    send_frames(kafka_bootstrap, topics.raw, frames)
    failing = WorkerThread(broken, ["preprocess"])
    threads.append(failing)
    failing.thread.join(120)
    assert not failing.thread.is_alive(), "the worker kept going after a failed delivery"
    assert isinstance(failing.error, DeliveryFailed), failing.error
    failing.error = None
    assert committed_total(settings, "preprocess") == 0
    assert record_count(kafka_bootstrap, topics.features, topics.partitions) == 0

    # Fixed, the same group picks the frames up again from the uncommitted offsets.
    healthy = WorkerThread(settings, ["preprocess"])
    threads.append(healthy)
    wait_for(
        lambda: record_count(kafka_bootstrap, topics.features, topics.partitions) == len(frames),
        timeout=120,
        what="frames reprocessed after the failure",
    )


def test_partitions_revoked_mid_batch_are_settled_before_they_move(
    kafka_bootstrap: str,
    topic_factory: object,
    threads: list[WorkerThread],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A replica joins while the owner computes one big batch (seconds long, partitions paused).

    The owner's revoke callback waits for the batch, delivers it, stores and commits its offsets;
    the joiner starts after them. Nothing is lost and nothing is done twice.
    """
    settings = fresh_pipeline(  # type: ignore[arg-type]
        kafka_bootstrap,
        topic_factory,
        partitions=4,
        pipeline={"stages": {"preprocess": {"batch": {"max_size": 1024, "max_wait_ms": 500}}}},
    )
    # Heartbeats every 0.5 s: the owner learns of the rebalance while its batch still computes.
    settings = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"extra": {"heartbeat.interval.ms": "500"}})}
    )
    topics = settings.pipeline.topics
    clips = eval_clips()
    frames = [f for wave in "abcdefghijkl" for f in frames_from(clips, prefix=wave)][:1024]
    # Both replicas load (and warm up) first: the frames' deadlines start ticking when sent.
    joiner = WorkerThread(settings, ["preprocess"], start_now=False)
    threads.append(joiner)
    owner = WorkerThread(settings, ["preprocess"], start_now=False)
    threads.append(owner)
    # The owner's compute thread is held until its revoke callback runs, so the rebalance lands
    # during the batch by construction, however fast this machine computes 1024 frames.
    revoke_began = threading.Event()
    revoke = owner.worker._on_revoke

    def revoke_and_release(consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoke_began.set()
        revoke(consumer, partitions)

    owner.worker._on_revoke = revoke_and_release  # type: ignore[method-assign]
    owner.worker._pool.submit(revoke_began.wait, 120)  # runs ahead of the first batch
    send_frames(kafka_bootstrap, topics.raw, frames)  # all there before the owner's first batch
    owner.start()
    wait_for(lambda: owner.telemetry.taken_count > 0, timeout=120, what="owner took its first batch")
    joiner.start()
    wait_for(
        lambda: record_count(kafka_bootstrap, topics.features, topics.partitions) >= len(frames),
        timeout=240,
        what="every frame preprocessed",
    )
    wait_for(lambda: bool(joiner.telemetry.assigned), timeout=90, what="joiner assigned")
    for w in threads:
        w.stop()
    threads.clear()
    total = record_count(kafka_bootstrap, topics.features, topics.partitions)
    with capsys.disabled():
        print(
            f"\n[revoke mid-batch] frames={len(frames)} owner={owner.telemetry.settled_count} "
            f"joiner={joiner.telemetry.settled_count} revoked-mid-batch={owner.worker.revoked_mid_batch}"
        )
    assert total == len(frames), f"{total - len(frames)} frames processed twice"
    assert owner.worker.revoked_mid_batch >= 1, "the rebalance did not land during the batch"


def _frames_accounted(records: list[Record], late_topic: str) -> int:
    """Output records, a late record counting the frames it stands for (ontime-late-count)."""
    return sum(
        ErrorRecord.from_headers("late", r.headers).count if r.topic == late_topic else 1 for r in records
    )


def test_a_second_signal_leaves_at_once_and_stores_nothing_undelivered(
    kafka_bootstrap: str, topic_factory: object, tmp_path: Path, processes: list[WorkerProcess]
) -> None:
    """SIGTERM twice during a seconds-long batch: the batch is dropped, not half-committed."""
    settings = fresh_pipeline(kafka_bootstrap, topic_factory)  # type: ignore[arg-type]
    topics = settings.pipeline.topics
    flags = ["--log-level", "DEBUG", "--set", "pipeline.stages.preprocess.batch.max_size=1024"]
    flags += ["--set", "pipeline.stages.preprocess.batch.max_wait_ms=500"]
    # The reference STFT front end (6x the served one's cost): the batch of 1024 must still be
    # computing when the second signal arrives.
    flags += ["--set", "pipeline.stages.preprocess.model=acoustic/features-stft"]
    clips = eval_clips()
    frames = [f for wave in "abcdefghijkl" for f in frames_from(clips, prefix=wave)][:1024]
    worker = WorkerProcess(settings, "preprocess", tmp_path / "preprocess-1.log", flags)
    processes.append(worker)
    worker.wait_started()
    send_frames(kafka_bootstrap, topics.raw, frames)
    wait_for(lambda: "batch-slow" in worker.log_text(), timeout=120, what="a batch computing for long")
    worker.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: "stopping" in worker.log_text(), timeout=30, what="first signal handled")
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(60) == 0, worker.log_text()
    log = worker.log_text()
    assert "batch-abandoned" in log, log
    # Whatever was delivered before the batch in hand is committed; the abandoned batch is not.
    delivered = record_count(kafka_bootstrap, topics.features, topics.partitions)
    assert committed_total(settings, "preprocess") == delivered < len(frames)

    again = WorkerProcess(settings, "preprocess", tmp_path / "preprocess-2.log")
    processes.append(again)
    reader = Reader(kafka_bootstrap, [topics.features, topics.late, topics.dlq], topics.partitions)
    try:  # answered, or (on a slow machine) accounted late: each abandoned frame exactly once
        reader.read_until(lambda rs: _frames_accounted(rs, topics.late) >= len(frames), timeout=180)
    finally:
        reader.close()
    assert again.stop() == 0, again.log_text()


def test_a_consumer_left_without_partitions_is_replaced_and_rejoins_without_loss(
    kafka_bootstrap: str, topic_factory: object, threads: list[WorkerThread]
) -> None:
    """The symptom of a stuck group connection (every partition lost, none back while the broker
    answers) makes the worker subscribe a fresh consumer; frames before and after are answered.

    The stuck state itself comes from librdkafka after a broker freeze and cannot be made on
    demand; the watch is put into it here, on a healthy consumer, which also proves that the
    replaced consumer's own revocation (on its closing thread) touches nothing of the worker.
    """
    settings = fresh_pipeline(kafka_bootstrap, topic_factory, partitions=3)  # type: ignore[arg-type]
    topics = settings.pipeline.topics
    fused = WorkerThread(settings, ["preprocess", "infer", "postprocess"])
    threads.append(fused)
    wait_for(lambda: len(fused.telemetry.assigned) == 3, timeout=90, what="the fused worker owns all")
    reader = Reader(kafka_bootstrap, [topics.results], topics.partitions)
    try:
        first = frames_from(eval_clips(), prefix="before")
        send_frames(kafka_bootstrap, topics.raw, first)
        reader.read_until(lambda rs: len(rs) >= len(first), timeout=120)
        stuck = fused.worker.consumer
        fused.worker._rejoin.after_s = fused.worker._rejoin.grace_s = 0.5
        fused.worker._rejoin.lost_everything()
        wait_for(lambda: fused.worker._rejoin.rejoins == 1, timeout=30, what="the consumer replaced")
        assert fused.worker.consumer is not stuck
        second = frames_from(eval_clips(), prefix="after")
        send_frames(kafka_bootstrap, topics.raw, second)
        records = reader.read_until(lambda rs: len(rs) >= len(first) + len(second), timeout=180)
    finally:
        reader.close()
    answered = Counter(r.headers["ontime-id"] for r in records)
    assert set(answered) == {f.id for f in first + second}
    assert fused.worker._rejoin.rejoins == 1  # assigned again: the watch stood down
