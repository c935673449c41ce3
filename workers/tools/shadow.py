"""Shadow: a candidate version answers live traffic beside the serving one, and nobody sees it.

`ontime worker --stage infer --shadow 2.0.0` consumes the stage's input topic in a consumer
group of its own (`ontime.P.<stage>.shadow`), so the serving group loses nothing, runs the
serving version and the candidate on every batch, and writes one comparison per frame to
`P.shadow`: never to `P.results`, `P.late` or `P.dlq`, and no latency reports or rollout
answers on `P.control`. Frames the stage cannot decode are skipped (the serving stage
dead-letters them). A new shadow group starts at the newest frames; offsets are stored once a
batch's comparisons are delivered.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from dataclasses import asdict, dataclass
from types import FrameType

import numpy as np
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from prometheus_client import start_http_server

from workers.config.settings import OntimeSettings
from workers.config.versions import with_version
from workers.errors import ConfigError, OntimeError, PoisonMessage
from workers.kafka.acls import shadow_group
from workers.kafka.clients import consumer_config, producer_config
from workers.messages import headers as h
from workers.messages.deadline import now_ms
from workers.messages.envelope import Envelope
from workers.stages.candidate import prepare
from workers.stages.model import OnnxModel
from workers.stages.stage import build_stage
from workers.telemetry.logs import event
from workers.telemetry.shadow import ShadowMetrics
from workers.tools.rollout import ControlTopic, current_plan

log = logging.getLogger("ontime.shadow")

FLUSH_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Comparison:
    """One frame as the serving version and the candidate answered it (a `P.shadow` value)."""

    id: str
    device: str | None
    at_ms: int
    label: str  # the serving version's top-1
    score: float
    candidate_label: str
    candidate_score: float
    agree: bool
    score_delta: float  # candidate's probability of `label` minus `score`
    serving_model: str  # name:version
    candidate_model: str
    serving_ms: float  # model run time of the batch, each version on the same batch
    candidate_ms: float

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()


def compare(
    labels: list[str], serving: np.ndarray, candidate: np.ndarray
) -> list[tuple[str, float, str, float, float]]:
    """Per row: serving label and probability, candidate label and probability, candidate's
    probability of the serving label (softmax of each version's logits)."""
    p, q = _softmax(serving), _softmax(candidate)
    top_p, top_q = p.argmax(axis=1), q.argmax(axis=1)
    rows = np.arange(len(p))
    return [
        (labels[a], float(p[i, a]), labels[b], float(q[i, b]), float(q[i, a]))
        for i, a, b in zip(rows, top_p, top_q, strict=True)
    ]


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64).reshape(len(logits), -1)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    probs: np.ndarray = z / z.sum(axis=1, keepdims=True)
    return probs


class ShadowWorker:
    """Serving version and candidate on the same batches of the stage's input; comparisons out."""

    def __init__(
        self, settings: OntimeSettings, stage: str, version: str, metrics: ShadowMetrics | None = None
    ) -> None:
        pipeline = settings.pipeline
        self.settings = settings
        self.stage = build_stage(pipeline, stage, models_dir=settings.models_dir, warm=False)
        serving_ref = self._serving_ref(stage)
        if serving_ref != self.stage.spec.model:  # what the serving group answers with right now
            ready = prepare(
                serving_ref,
                self.stage.model,
                max_batch=self.stage.spec.batch.max_size,
                root=settings.models_dir,
            )
            self.stage.model = ready.model
        self.serving: OnnxModel = self.stage.model
        self.candidate = prepare(
            with_version(serving_ref, version),
            self.serving,
            max_batch=self.stage.spec.batch.max_size,
            root=settings.models_dir,
        ).model
        self.labels = self.serving.card.labels
        if not self.labels:
            raise ConfigError(f"stage {stage}: its model has no labels, and a shadow compares top-1 labels")
        self.metrics = metrics
        self.topic = pipeline.topics.shadow
        group = shadow_group(pipeline, stage)
        # A new shadow starts at the newest frames: it is about live traffic, not the retained backlog.
        conf = {**consumer_config(settings, stage), "group.id": group, "client.id": group}
        self.consumer = Consumer({**conf, "auto.offset.reset": "latest"})
        self.producer = Producer(producer_config(settings, stage, transactional=False))
        self.input_topic = pipeline.input_topic(stage)
        self._stop = threading.Event()
        self.compared = 0
        self.skipped = 0

    def _serving_ref(self, stage: str) -> str:
        control = ControlTopic(self.settings)
        try:
            return current_plan(self.settings, control.read_to_end(), stage).serving
        finally:
            control.close()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        event(log, "shadow-started", stage=self.stage.name, serving=self.serving.identity[:64],
              candidate=self.candidate.identity[:64], input=self.input_topic, output=self.topic)  # fmt: skip
        self.consumer.subscribe([self.input_topic])
        try:
            while not self._stop.is_set():
                batch = self.consumer.consume(self.stage.spec.batch.max_size, timeout=0.5)
                records = [m for m in batch if m.error() is None]
                if records:
                    self._compare(records)
        finally:
            self.consumer.close()
            self.producer.flush(FLUSH_TIMEOUT_S)
            event(log, "shadow-stopped", compared=self.compared, skipped=self.skipped)

    def _compare(self, records: list[Message]) -> None:
        pipeline = self.settings.pipeline
        taken = now_ms()
        envs: list[Envelope] = []
        arrays: list[np.ndarray] = []
        for msg in records:
            env = Envelope.from_record(
                msg, budget_ms=pipeline.budget_ms, skew_ms=pipeline.max_clock_skew_ms, taken_ms=taken
            )
            try:
                arrays.append(self.stage.validate(env))
            except PoisonMessage:
                self.skipped += 1  # the serving stage dead-letters it; the shadow writes nowhere else
                continue
            envs.append(env)
        if envs:
            x = np.concatenate(arrays, axis=0)
            out: list[np.ndarray] = []
            took: list[float] = []
            for model in (self.serving, self.candidate):
                started = now_ms()
                out.append(model.run({self.stage.input_name: x})[model.output_names[0]])
                took.append(now_ms() - started)
            if self.metrics is not None:
                self.metrics.batch(self.serving.identity, took[0] / 1000.0)
                self.metrics.batch(self.candidate.identity, took[1] / 1000.0)
            at = int(now_ms())
            for env, row in zip(envs, compare(self.labels, out[0], out[1]), strict=True):
                label, score, cand_label, cand_score, cand_of_label = row
                comparison = Comparison(
                    env.id, env.key.decode(errors="replace") if env.key else None, at, label, score,
                    cand_label, cand_score, label == cand_label, cand_of_label - score,
                    _short(self.serving.identity), _short(self.candidate.identity), took[0], took[1],
                )  # fmt: skip
                self.producer.produce(
                    self.topic, key=env.key, value=comparison.encode(),
                    headers=[(h.ID, env.id.encode()), (h.MODEL, self.candidate.identity.encode())],
                )  # fmt: skip
                if self.metrics is not None:
                    self.metrics.observe(label, comparison.agree, comparison.score_delta)
        if self.producer.flush(FLUSH_TIMEOUT_S):
            raise OntimeError(f"shadow comparisons not delivered to {self.topic} within {FLUSH_TIMEOUT_S} s")
        self.compared += len(envs)
        try:
            self.consumer.store_offsets(offsets=_next_offsets(records))
        except KafkaException as exc:  # revoked meanwhile: the new owner compares these again
            event(log, "shadow-store-failed", logging.WARNING, error=str(exc))


def _next_offsets(records: list[Message]) -> list[TopicPartition]:
    newest: dict[tuple[str, int], int] = {}
    for m in records:
        key = (str(m.topic()), int(m.partition() or 0))
        newest[key] = max(newest.get(key, -1), int(m.offset() or 0) + 1)
    return [TopicPartition(t, p, o) for (t, p), o in newest.items()]


def _short(identity: str) -> str:
    return identity.rsplit(":", 1)[0]


def run_shadow(settings: OntimeSettings, stages: list[str], version: str) -> int:
    """`ontime worker --stage S --shadow VERSION`: run until SIGTERM/SIGINT."""
    if len(stages) != 1:
        raise ConfigError("--shadow runs one stage (e.g. --stage infer)")
    metrics = ShadowMetrics(settings.pipeline.name, stages[0])
    worker = ShadowWorker(settings, stages[0], version, metrics)
    if settings.worker.metrics_port is not None:
        start_http_server(settings.worker.metrics_port, registry=metrics.registry)

    def handle(signum: int, frame: FrameType | None) -> None:
        worker.stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    worker.run()
    return 0
