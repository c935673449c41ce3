"""What a benchmark needs around the pipeline: a broker, private topics, worker processes, a
collector of everything that comes out, and a probe of consumer lag.

Benchmarks run the real thing — Kafka broker, one OS process per stage, real models — on topics
and consumer groups of their own, so they never mix with a demo or another run.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from workers.config.settings import OntimeSettings
from workers.config.spec import STAGE_ORDER, TOPIC_KINDS, PipelineSpec
from workers.errors import OntimeError
from workers.kafka import groups as kafka_groups
from workers.kafka import topics as kafka_topics
from workers.kafka.topics import admin_client
from workers.localkafka.find import broker_for_run
from workers.messages import headers as h
from workers.messages.deadline import now_ms
from workers.tools.processes import spawn_worker


def _admin(settings: OntimeSettings) -> AdminClient:
    return admin_client(settings.kafka, "ontime-bench", quiet=True)


class BenchError(OntimeError):
    """The benchmark could not set up or run its pipeline."""


@contextlib.contextmanager
def broker() -> Iterator[str]:
    """Bootstrap servers from workers.localkafka.find: the environment's cluster, a running local
    broker, or one started here (and stopped on exit)."""
    with broker_for_run() as found:
        yield found.bootstrap


def private_pipeline(settings: OntimeSettings, bootstrap: str, tag: str, **changes: Any) -> OntimeSettings:
    """The pipeline under a fresh name: own topics (`<tag>-<id>.raw` …) and own consumer groups."""
    data = settings.pipeline.model_dump(mode="json")
    run = uuid.uuid4().hex[:8]
    data["name"] = f"{tag}{run}"
    data["topics"].update({k: f"{tag}-{run}.{k}" for k in (*TOPIC_KINDS, "events")})
    data.update(changes)
    return settings.model_copy(
        update={
            # Keep TLS/SASL settings: only the address changes.
            "kafka": settings.kafka.model_copy(update={"bootstrap_servers": bootstrap}),
            "pipeline": PipelineSpec.model_validate(data),
        }
    )


def create_topics(settings: OntimeSettings, timeout_s: float = 60.0) -> None:
    """The pipeline's topics as `ontime topics create` makes them (results in LogAppendTime)."""
    kafka_topics.create_topics(settings, timeout_s)


def delete_topics(settings: OntimeSettings) -> None:
    """Best effort at the end of a run: a failure here must not hide the run's own error."""
    with contextlib.suppress(OntimeError):
        kafka_topics.delete(_admin(settings), settings.pipeline.topics.all(), 30.0, wait=False)


def backlog_rate(arrivals_ms: Sequence[float]) -> float:
    """Results per second between the 10th and 90th percentile of their arrival times (ms).

    Start-up (processes joining, caches warming) and the tail (the last partition draining alone)
    do not count: what is left is the rate the processes sustain while they have work.
    """
    arrivals = np.sort(np.asarray(arrivals_ms, dtype=np.float64))
    if arrivals.size < 2:
        raise BenchError(f"a backlog rate needs at least 2 results, got {arrivals.size}")
    lo, hi = np.quantile(arrivals, [0.1, 0.9])
    return float(0.8 * arrivals.size / max(1e-3, (hi - lo) / 1000.0))


def wait_assigned(
    settings: OntimeSettings,
    stages: Sequence[str],
    timeout_s: float = 90.0,
    check: Callable[[], None] | None = None,
) -> None:
    """Until each stage's consumer group has a member holding partitions (`check` may raise)."""
    wait_groups(settings, [settings.pipeline.group_id(s) for s in stages], timeout_s, check)


def wait_groups(
    settings: OntimeSettings,
    groups: Sequence[str],
    timeout_s: float = 90.0,
    check: Callable[[], None] | None = None,
) -> None:
    """Until each consumer group has a member holding partitions (`check` may raise)."""
    pending = kafka_groups.wait_assigned(_admin(settings), groups, timeout_s, check)
    if pending:
        raise BenchError(f"consumer groups not assigned after {timeout_s:.0f} s: {sorted(pending)}")


@dataclass
class WorkerProcess:
    stage: str
    proc: subprocess.Popen[bytes]
    log: Path


def write_pipeline(settings: OntimeSettings, run_dir: Path) -> Path:
    """The (private) pipeline as a YAML file in `run_dir`, for worker and peer processes to read."""
    spec = settings.pipeline
    path = run_dir / f"{spec.name}.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    return path


class Workers:
    """`ontime worker --stage X` processes on the pipeline written to `run_dir`.

    `processes` lists each process's `--stage` value: one per stage by default, or
    `("preprocess,infer,postprocess",)` for the whole chain fused in one process.
    """

    def __init__(
        self, settings: OntimeSettings, run_dir: Path, processes: Sequence[str] = STAGE_ORDER
    ) -> None:
        self.settings = settings
        self.run_dir = run_dir
        self.processes = tuple(processes)
        self.procs: list[WorkerProcess] = []
        self.pipeline_file = run_dir / f"{settings.pipeline.name}.yaml"

    @property
    def pids(self) -> list[int]:
        return [w.proc.pid for w in self.procs]

    def start(self, ready_timeout_s: float = 90.0, wait: bool = True) -> None:
        """Spawn the processes; with `wait`, until every stage's group holds partitions."""
        self.pipeline_file = write_pipeline(self.settings, self.run_dir)
        for stage in self.processes:
            self.procs.append(self._spawn(stage))
        if wait:
            self._wait_ready(ready_timeout_s)

    def _spawn(self, stage: str) -> WorkerProcess:
        log = self.run_dir / f"{self.settings.pipeline.name}-{stage.replace(',', '+')}.log"
        proc = spawn_worker(stage, str(self.pipeline_file), self.settings.kafka.bootstrap_servers, log)
        return WorkerProcess(stage, proc, log)

    def kill(self, stage: str) -> None:
        """kill -9 the stage's process, as a crash would (fault benchmarks); `respawn` replaces it."""
        for w in self.procs:
            if w.stage == stage and w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait(timeout=30)

    def respawn(self, stage: str) -> None:
        """A new process for a stage whose process is gone (killed or crashed)."""
        self.procs = [
            self._spawn(stage) if w.stage == stage and w.proc.poll() is not None else w for w in self.procs
        ]

    def _wait_ready(self, timeout_s: float) -> None:
        firsts = [p.split(",")[0].strip() for p in self.processes]
        wait_assigned(self.settings, firsts, timeout_s, self.check_alive)

    def check_alive(self) -> None:
        for w in self.procs:
            code = w.proc.poll()
            if code is not None:
                tail = w.log.read_text(errors="replace").splitlines()[-20:]
                raise BenchError(f"worker {w.stage} exited with {code}:\n" + "\n".join(tail))

    def stop(self, timeout_s: float = 30.0) -> None:
        for w in self.procs:
            if w.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.send_signal(signal.SIGTERM)
        for w in self.procs:
            try:
                w.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait(timeout=10)
        self.procs = []


@dataclass(slots=True)
class Seen:
    """One frame (or a counted range of them) as it came out: where, when, and what it said."""

    kind: str  # result, late, dlq
    received_ms: float
    status: str = ""
    reason: str = ""
    stage: str = ""
    captured_ms: int | None = None
    deadline_ms: int | None = None
    completed_ms: int | None = None
    appended_ms: int | None = None  # broker append time of the result record
    stages: tuple[tuple[str, float, float], ...] = ()  # (stage, queue_ms, compute_ms)
    count: int = 1  # frames this record accounts for (a late record may stand for a skipped range)


def late_count(value: str) -> int:
    """Frames a late record stands for (`ontime-late-count`, set on a skipped range); absent: 1."""
    return int(value) if value.isdigit() and int(value) > 0 else 1


def record_key(headers: dict[str, str], count: int = 1) -> str:
    """What identifies an outcome record: its frame id, or for a counted range its source position.

    A redelivered record (at-least-once) has the same key, so it is not counted twice.
    """
    frame = headers.get(h.ID, "")
    if count == 1 and frame:
        return frame
    where = (
        headers.get(h.SOURCE_TOPIC, ""),
        headers.get(h.SOURCE_PARTITION, ""),
        headers.get(h.SOURCE_OFFSET, ""),
    )
    return "/".join(where) + f"+{count}"


class Collector:
    """Reads P.results, P.late and P.dlq in a thread and keeps the latest word on every frame id.

    `frames` counts every frame accounted for once (a redelivered record does not count twice,
    a late record with a count header counts that many); `log` lists records in arrival order.
    """

    def __init__(self, settings: OntimeSettings) -> None:
        topics = settings.pipeline.topics
        self.topics = topics
        self.consumer = Consumer(
            {
                **settings.kafka.as_librdkafka_dict(),
                "group.id": f"bench-collector-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 5,
            }
        )
        self.consumer.subscribe([topics.results, topics.late, topics.dlq])
        self.seen: dict[str, Seen] = {}
        self.log: list[Seen] = []
        self.frames = 0
        self.records = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-collector", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.consumer.close()

    def _run(self) -> None:
        import json

        while not self._stop.is_set():
            # A short timeout: consume() holds a partial batch until it expires, which would
            # count as end-to-end latency.
            for msg in self.consumer.consume(num_messages=1000, timeout=0.002):
                if msg.error():
                    continue
                self.records += 1
                hd = h.as_dict(msg.headers())  # type: ignore[arg-type]
                if msg.topic() == self.topics.results:
                    self._keep(record_key(hd), self._result(msg, json.loads(msg.value() or b"{}")))
                    continue
                deadline = hd.get(h.DEADLINE_MS, "")
                seen = Seen(
                    "late" if msg.topic() == self.topics.late else "dlq",
                    now_ms(),
                    reason=hd.get(h.ERROR_REASON, ""),
                    stage=hd.get(h.ERROR_STAGE, ""),
                    deadline_ms=int(deadline) if deadline.lstrip("-").isdigit() else None,
                    count=late_count(hd.get(h.LATE_COUNT, "")),
                )
                self._keep(record_key(hd, seen.count), seen)

    @staticmethod
    def _result(msg: Any, body: dict[str, Any]) -> Seen:
        return Seen(
            "result",
            now_ms(),
            status=body.get("status", ""),
            captured_ms=body.get("captured_ms"),
            deadline_ms=body.get("deadline_ms"),
            completed_ms=body.get("completed_ms"),
            appended_ms=msg.timestamp()[1] if msg.timestamp()[0] == TIMESTAMP_LOG_APPEND_TIME else None,
            stages=tuple((t["stage"], t["queue_ms"], t["compute_ms"]) for t in body.get("stages", [])),
        )

    def _keep(self, key: str, seen: Seen) -> None:
        if key not in self.seen:
            self.log.append(seen)
            self.frames += seen.count
        self.seen[key] = seen

    def accounted(self, ids: set[str]) -> int:
        return sum(1 for i in ids if i in self.seen)


class LagProbe:
    """Committed-offset lag of each stage's consumer group on its input topic."""

    def __init__(self, settings: OntimeSettings) -> None:
        spec = settings.pipeline
        self.parts = spec.topics.partitions
        self.probes = {
            stage: (
                spec.input_topic(stage),
                Consumer(
                    {
                        **settings.kafka.as_librdkafka_dict(),
                        "group.id": spec.group_id(stage),  # only reads its commits, never joins
                        "enable.auto.commit": False,
                    }
                ),
            )
            for stage in STAGE_ORDER
        }

    def lag(self) -> dict[str, int]:
        """Per stage: records in its input topic not yet committed by its group."""
        out: dict[str, int] = {}
        for stage, (topic, consumer) in self.probes.items():
            tps = [TopicPartition(topic, p) for p in range(self.parts)]
            total = 0
            try:
                committed = consumer.committed(tps, timeout=10)
                for tp in committed:
                    low, high = consumer.get_watermark_offsets(
                        TopicPartition(topic, tp.partition), timeout=10
                    )
                    total += high - (tp.offset if tp.offset >= 0 else low)
            except KafkaException:
                total = -1
            out[stage] = total
        return out

    def close(self) -> None:
        for _, consumer in self.probes.values():
            consumer.close()
