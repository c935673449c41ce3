"""What the pipeline integration tests share: fresh topics, frames in, records out, workers.

Every test gets its own pipeline name (so its own consumer groups) and its own six topics, made
through settings overrides exactly as an operator would rename them. Workers run either as
threads of the test process or as `ontime worker` subprocesses (for kill -9).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from pipelines.acoustic.recordings import Clip, real_clips
from workers.config.settings import OntimeSettings, load_settings, merge_overrides
from workers.config.spec import TOPIC_KINDS, StageSpec
from workers.kafka.groups import wait_assigned
from workers.kafka.topics import admin_client, pipeline_topics
from workers.loop.worker import StageWorker
from workers.messages import headers as h
from workers.stages.chain import build_stages
from workers.stages.model import OnnxModel
from workers.telemetry.hooks import Telemetry

ROOT = Path(__file__).resolve().parents[2]
PCM = "audio/pcm;format=s16le;rate=16000;channels=1"
# Far more than any test needs, so deadline routing never decides a functional test.
BUDGET_MS = 60_000


def pipeline_overrides(name: str, bootstrap: str, partitions: int) -> dict[str, Any]:
    topics = {t: f"{name}.{t}" for t in TOPIC_KINDS}
    pipeline: dict[str, Any] = {
        "name": name,
        "budget_ms": BUDGET_MS,
        "topics": {**topics, "partitions": partitions},
    }
    if "gate" in StageSpec.model_fields:  # the offline reference runs the three models, no gate
        pipeline["stages"] = {"infer": {"gate": None}}
    return {"pipeline": pipeline, "kafka": {"bootstrap_servers": bootstrap}}


def fresh_pipeline(
    bootstrap: str,
    topic_factory: Callable[..., str],
    partitions: int = 3,
    pipeline: dict[str, Any] | None = None,
    base: str = "acoustic",
) -> OntimeSettings:
    """Settings of the bundled pipeline `base` under a unique name whose six topics exist."""
    name = f"t{uuid.uuid4().hex[:10]}"
    overrides = pipeline_overrides(name, bootstrap, partitions)
    merge_overrides(overrides["pipeline"], pipeline or {})
    settings = load_settings(base, overrides)
    make_topics(settings, topic_factory)
    return settings


def make_topics(settings: OntimeSettings, topic_factory: Callable[..., str]) -> None:
    """The pipeline's six topics through the test's factory, configured as `ontime topics create` does."""
    for new in pipeline_topics(settings.pipeline.topics):
        topic_factory(partitions=new.num_partitions, config=new.config, name=new.topic)


def cli_overrides(settings: OntimeSettings, stage_batch: dict[str, int] | None = None) -> list[str]:
    """The same settings as `--set` flags for an `ontime worker` subprocess."""
    p = settings.pipeline
    flags = [
        f"pipeline.name={p.name}",
        f"pipeline.budget_ms={p.budget_ms}",
        f"pipeline.topics.partitions={p.topics.partitions}",
        *(f"pipeline.topics.{t}={getattr(p.topics, t)}" for t in TOPIC_KINDS),
    ]
    if "gate" in StageSpec.model_fields:
        flags.append("pipeline.stages.infer.gate=null")
    for key, value in (stage_batch or {}).items():
        flags.append(f"pipeline.stages.infer.batch.{key}={value}")
    out: list[str] = []
    for flag in flags:
        out += ["--set", flag]
    return out


@dataclass(frozen=True)
class Frame:
    id: str
    device: str
    label: str
    payload: bytes
    content_type: str = PCM


def frames_from(clips: Sequence[Clip], prefix: str = "f", devices: int = 7) -> list[Frame]:
    return [
        Frame(f"{prefix}-{i:04d}", f"dev-{i % devices}", c.label, c.pcm.astype("<i2").tobytes())
        for i, c in enumerate(clips)
    ]


_CLIPS: list[Clip] = []


def eval_clips() -> list[Clip]:
    """The labelled real recordings (cached: decoding them takes a moment)."""
    if not _CLIPS:
        _CLIPS.extend(real_clips("eval"))
    return list(_CLIPS)


def produce(
    bootstrap: str, topic: str, records: Iterable[tuple[str | None, bytes | None, list[tuple[str, bytes]]]]
) -> int:
    """Produce (key, value, headers) records and wait until all are delivered."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    failures: list[str] = []
    count = 0
    for key, value, headers in records:
        producer.produce(
            topic,
            value=value,
            key=key.encode() if key else None,
            headers=headers,
            on_delivery=lambda err, _msg: failures.append(str(err)) if err else None,
        )
        count += 1
    assert producer.flush(30) == 0, "frames not delivered"
    assert not failures, failures
    return count


def send_frames(bootstrap: str, topic: str, frames: Sequence[Frame]) -> int:
    now = str(int(time.time() * 1000))
    return produce(
        bootstrap,
        topic,
        (
            (
                f.device,
                f.payload,
                [
                    (h.ID, f.id.encode()),
                    (h.CONTENT_TYPE, f.content_type.encode()),
                    (h.CAPTURED_MS, now.encode()),
                ],
            )
            for f in frames
        ),
    )


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]


class Reader:
    """Reads topics from the beginning without a consumer group (assign, not subscribe)."""

    def __init__(self, bootstrap: str, topics: Sequence[str], partitions: int) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"reader-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
            }
        )
        self.consumer.assign(
            [TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in range(partitions)]
        )
        self.records: list[Record] = []

    def read_until(self, done: Callable[[list[Record]], bool], timeout: float = 120.0) -> list[Record]:
        deadline = time.monotonic() + timeout
        while not done(self.records):
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met after {timeout} s with {len(self.records)} records")
            for msg in self.consumer.consume(num_messages=500, timeout=0.2):
                if msg.error() is None:
                    self.records.append(
                        Record(
                            msg.topic(),
                            msg.partition(),
                            msg.offset(),
                            msg.key(),
                            msg.value(),
                            h.as_dict(msg.headers()),
                        )
                    )
        return self.records

    def by_topic(self, topic: str) -> list[Record]:
        return [r for r in self.records if r.topic == topic]

    def close(self) -> None:
        self.consumer.close()


def record_count(bootstrap: str, topic: str, partitions: int) -> int:
    """Records in a topic (idempotent producers, no transactions: the high watermarks add up)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"count-{uuid.uuid4().hex}"})
    try:
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)
        )
    finally:
        consumer.close()


def committed_total(settings: OntimeSettings, stage: str) -> int:
    """Sum of the offsets the stage's group committed on its input topic (0 where none)."""
    p = settings.pipeline
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": p.group_id(stage)}
    )
    try:
        parts = [TopicPartition(p.input_topic(stage), i) for i in range(p.topics.partitions)]
        return sum(max(0, tp.offset) for tp in consumer.committed(parts, timeout=10))
    finally:
        consumer.close()


def wait_assigned_stages(settings: OntimeSettings, stages: Sequence[str], timeout: float = 90.0) -> None:
    """Until each stage's consumer group holds partitions (workers.kafka.groups, as the demo waits)."""
    groups = [settings.pipeline.group_id(s) for s in stages]
    unassigned = wait_assigned(admin_client(settings.kafka), groups, timeout)
    assert not unassigned, f"consumer groups not assigned after {timeout:.0f} s: {sorted(unassigned)}"


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout} s")
        time.sleep(0.05)  # polling a condition, not a fixed delay


def holds_for(invariant: Callable[[], bool], seconds: float, what: str) -> None:
    """Watch `invariant` through a stretch of time the test needs (a fault's length, a window in
    which nothing more may arrive), failing as soon as it breaks instead of after the stretch."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert invariant(), f"{what}: broken after {seconds - (deadline - time.monotonic()):.1f} s"
        time.sleep(0.05)  # polling the invariant
    assert invariant(), what


def alive(worker: WorkerThread) -> Callable[[], bool]:
    """A worker thread still running, with no error."""
    return lambda: worker.thread.is_alive() and worker.error is None


# -- reference ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Reference:
    """What the served models answer for one frame when run offline, alone."""

    label: str
    score: float
    margin: float  # top-1 minus top-2 probability: how close the answer is to a tie


def offline_reference(settings: OntimeSettings, frames: Sequence[Frame]) -> dict[str, Reference]:
    """id → answer from running the three served ONNX models directly, one frame at a time."""
    stages = settings.pipeline.stages
    features = OnnxModel(stages["preprocess"].model)
    classifier = OnnxModel(stages["infer"].model)
    post = OnnxModel(stages["postprocess"].model)
    out: dict[str, Reference] = {}
    for f in frames:
        x = (np.frombuffer(f.payload, dtype="<i2").astype(np.float32) / 32768.0)[None, :]
        feats = features.run({features.input_names[0]: x})[features.output_names[0]]
        logits = classifier.run({classifier.input_names[0]: feats})[classifier.output_names[0]]
        top = post.run({post.input_names[0]: logits})
        probs = top["top_prob"][0]
        margin = float(probs[0] - probs[1]) if len(probs) > 1 else 1.0
        out[f.id] = Reference(post.card.labels[int(top["top_index"][0][0])], float(probs[0]), margin)
    return out


def offline_labels(settings: OntimeSettings, frames: Sequence[Frame]) -> dict[str, str]:
    """id → label from running the three served ONNX models offline."""
    return {k: v.label for k, v in offline_reference(settings, frames).items()}


# -- workers -----------------------------------------------------------------------------
class Recorder(Telemetry):
    """Telemetry that remembers what the worker reported (a real observer, not a mock)."""

    def __init__(self) -> None:
        self.assigned: list[tuple[str, int]] = []
        self.started_stages: list[str] = []
        self.settled_count = 0
        self.taken_count = 0
        self.lags: dict[tuple[str, int], tuple[int, float | None]] = {}
        self.lag_history: list[tuple[str, int, int, float | None]] = []
        self.lock = threading.Lock()

    def started(self, pipeline: str, stage: str) -> None:
        self.started_stages.append(stage)

    def assignment(self, partitions: Sequence[tuple[str, int]]) -> None:
        with self.lock:
            self.assigned = list(partitions)

    def taken(self, topic: str, envs: Sequence[Any]) -> None:
        with self.lock:
            self.taken_count += len(envs)

    def lag(self, topic: str, partition: int, lag: int, oldest_age_ms: float | None) -> None:
        with self.lock:
            self.lags[(topic, partition)] = (lag, oldest_age_ms)
            self.lag_history.append((topic, partition, lag, oldest_age_ms))

    def settled(self, outcomes: Sequence[Any]) -> None:
        with self.lock:
            self.settled_count += len(outcomes)


class PacedDevice:
    """A device publishing real frames at a steady pace from a thread, through broker outages.

    Idempotent with `message.timeout.ms=0`, so a frame produced while the broker is away is
    delivered once it is back; `sent` holds every id handed to the producer, in order.
    """

    def __init__(self, bootstrap: str, topic: str, prefix: str, every_s: float = 0.02) -> None:
        self.topic, self.prefix, self.every_s = topic, prefix, every_s
        self.frames = frames_from(eval_clips(), prefix=prefix)
        self.sent: list[str] = []
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "enable.idempotence": True, "message.timeout.ms": 0}
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._publish, name=f"device-{prefix}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, flush_timeout: float = 120.0) -> int:
        """Stop sending; returns how many frames are still undelivered after the flush."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        return self.producer.flush(flush_timeout)

    def _publish(self) -> None:
        i = 0
        while not self._stop.is_set():
            f = self.frames[i % len(self.frames)]
            frame_id = f"{self.prefix}-{i:05d}"
            headers = [(h.ID, frame_id.encode()), (h.CONTENT_TYPE, PCM.encode())]
            try:
                self.producer.produce(self.topic, key=f.device.encode(), value=f.payload, headers=headers)
            except BufferError:
                self.producer.poll(0.1)
                continue
            self.sent.append(frame_id)
            self.producer.poll(0)
            i += 1
            self._stop.wait(self.every_s)  # the device's pace, not a wait for a condition


@dataclass
class WorkerThread:
    """A StageWorker running in a thread of the test process."""

    settings: OntimeSettings
    stages: list[str]
    telemetry: Telemetry = field(default_factory=Recorder)
    error: BaseException | None = None
    start_now: bool = True
    lag_every_s: float = 5.0

    def __post_init__(self) -> None:
        self.worker = StageWorker(
            self.settings,
            build_stages(self.settings.pipeline, self.stages),
            self.telemetry,
            lag_every_s=self.lag_every_s,
        )
        self.thread = threading.Thread(target=self._run, name=f"worker-{','.join(self.stages)}", daemon=True)
        if self.start_now:
            self.thread.start()

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:
            self.error = exc

    def stop(self, timeout: float = 60.0) -> None:
        self.worker.stop()
        if self.thread.ident is None:
            return  # never started
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"worker {self.stages} did not stop"
        if self.error is not None:
            raise self.error


def stop_all(workers: Sequence[WorkerThread], after: Callable[[WorkerThread], None] | None = None) -> None:
    """Stop every worker even when one fails (then `after(worker)`); fail with all errors at the end."""
    errors: list[BaseException] = []
    for w in workers:
        try:
            w.stop()
        except BaseException as exc:
            errors.append(exc)
        finally:
            if after is not None:
                after(w)
    assert not errors, errors


class WorkerProcess:
    """`python -m workers.cli worker --stage ...` as a subprocess, for signals and kill -9."""

    def __init__(
        self, settings: OntimeSettings, stage: str, log: Path, extra: list[str] | None = None
    ) -> None:
        cmd = [
            sys.executable,
            "-m",
            "workers.cli",
            "--bootstrap",
            settings.kafka.bootstrap_servers,
            *cli_overrides(settings),
            *(extra or []),
            "worker",
            "--stage",
            stage,
        ]
        self.log = log
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_started(self, timeout: float = 120.0) -> None:
        wait_for(
            lambda: " assigned " in self.log_text() or self.proc.poll() is not None,
            timeout,
            "worker assigned",
        )
        assert self.proc.poll() is None, f"worker exited:\n{self.log_text()}"

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout)


def committed_ids(
    bootstrap: str,
    topics: list[str],
    done: Callable[[list[str]], bool],
    timeout: float,
    quiet_s: float = 2.0,
) -> list[str]:
    """Ids of every committed record (read_committed, from the start) until `done(ids)` holds and
    nothing more arrived for `quiet_s` (late duplicates would show by then), or the timeout.

    A record without an id (a skipped range, say) counts as `?<topic>:<reason>`.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"eos-check-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe(topics)
    ids: list[str] = []
    deadline = time.monotonic() + timeout
    quiet_until = time.monotonic() + quiet_s
    try:
        while time.monotonic() < deadline and (not done(ids) or time.monotonic() < quiet_until):
            for msg in consumer.consume(num_messages=500, timeout=0.5):
                if msg.error() is None:
                    hd = h.as_dict(msg.headers())  # type: ignore[arg-type]
                    ids.append(hd.get(h.ID) or f"?{msg.topic()}:{hd.get(h.ERROR_REASON)}")
                    quiet_until = time.monotonic() + quiet_s
    finally:
        consumer.close()
    return ids
