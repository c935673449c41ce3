"""A stage stopped mid-stream and restarted resumes from its committed offset: no frame is lost.

infer runs as an `ontime worker` subprocess between preprocess and postprocess threads. It
processes a first wave of frames and is stopped — gracefully (SIGTERM) or killed (SIGKILL) —
while a second wave arrives; a restarted infer must answer both waves. The restart reprocesses
exactly the records after the group's committed offset: after SIGTERM that is nothing
(everything done was committed on the way out), after SIGKILL the uncommitted tail (counted).
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.pipeline_kit import (
    Reader,
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
from workers.settings import OntimeSettings

# Small batches: the first wave takes many produce/commit rounds. A short session timeout lets
# the killed member's partitions move to the restarted one in seconds, not the default 45 s.
FLAGS = ["--set", "pipeline.stages.infer.batch.max_size=4", "--set", "worker.session_timeout_ms=6000"]


@pytest.fixture
def threads() -> Iterator[list[WorkerThread]]:
    started: list[WorkerThread] = []
    yield started
    for w in started:
        w.stop()


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
    first_wave = frames_from(clips, prefix="a")
    second_wave = frames_from(clips, prefix="b")
    everyone = {f.id for f in first_wave + second_wave}
    for stage in ("preprocess", "postprocess"):
        threads.append(WorkerThread(settings, [stage]))
    reader = Reader(kafka_bootstrap, [topics.results], topics.partitions)
    try:
        infer = WorkerProcess(settings, "infer", tmp_path / "infer-1.log", FLAGS)
        processes.append(infer)
        infer.wait_started()
        send_frames(kafka_bootstrap, topics.raw, first_wave)
        wait_for(lambda: _scores(settings) >= len(first_wave), timeout=120, what="first wave scored")

        infer.proc.send_signal(how)
        code = infer.proc.wait(60)
        assert code == (0 if how == signal.SIGTERM else -signal.SIGKILL), infer.log_text()
        send_frames(kafka_bootstrap, topics.raw, second_wave)  # the stream goes on while infer is down
        before = _scores(settings)
        committed = committed_total(settings, "infer")
        if how == signal.SIGTERM:
            assert "stopped" in infer.log_text()
            assert committed == before == len(first_wave), "a graceful stop commits all it delivered"

        again = WorkerProcess(settings, "infer", tmp_path / "infer-2.log", FLAGS)
        processes.append(again)
        records = reader.read_until(lambda rs: {r.headers["ontime-id"] for r in rs} >= everyone, timeout=180)
        wait_for(
            lambda: committed_total(settings, "infer") == 2 * len(clips), timeout=60, what="restart committed"
        )
        assert again.stop() == 0, again.log_text()
    finally:
        reader.close()
    after = _scores(settings)
    # The restart redid exactly the records after the committed offset, no more, no fewer.
    assert after - before == 2 * len(clips) - committed
    duplicates = after - len(everyone)
    per_id = Counter(r.headers["ontime-id"] for r in records)
    assert set(per_id) == everyone
    if how == signal.SIGTERM:
        assert duplicates == 0 and max(per_id.values()) == 1
    with capsys.disabled():
        print(
            f"\n[{how.name}] frames={len(everyone)} scored-before-restart={before} committed={committed} "
            f"reprocessed={after - before} duplicates={duplicates}"
        )
