"""Prometheus metrics of a worker, named as docs/contract.md lists them, in a registry of its own.

Every series carries `pipeline` and `stage`; the stage is found from the topic a message was
consumed from, so one `Metrics` can watch all stages a process runs. Counts are taken in
`settled`, after delivery, so `ontime_messages_total` never counts work that was lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from workers.config.spec import STAGE_ORDER, PipelineSpec
from workers.messages.deadline import now_ms
from workers.telemetry.hooks import Telemetry

if TYPE_CHECKING:
    from workers.messages.envelope import Envelope
    from workers.messages.outcome import Outcome

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.04,
    0.05, 0.06, 0.07, 0.08, 0.09, 0.1, 0.11, 0.12, 0.13, 0.14, 0.15,
    0.175, 0.2, 0.225, 0.25, 0.275, 0.3,
    0.35, 0.4, 0.5, 0.75, 1.0, 1.5, 2.5,
)  # fmt: skip
"""Seconds: dense between 50 and 300 ms, where the 250 ms budget and its shares are decided."""

SLACK_BUCKETS = (
    -0.25, -0.1, -0.05, -0.025, -0.01, 0.0,
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.175, 0.2, 0.225, 0.25, 0.3, 0.5, 1.0,
)  # fmt: skip
"""Seconds left before the deadline once a stage's output is delivered (negative: late)."""

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

OUTCOMES = ("ok", "degraded", "late", "dlq")


def outcome_label(outcome: Outcome) -> str:
    """ok / degraded / late / dlq; an emitted envelope delivered late (late_policy: deliver) is late."""
    if outcome.kind != "emit":
        return outcome.kind
    status = outcome.envelope.status
    return status if status in OUTCOMES else "ok"


def stage_of(env: Envelope, stages: Sequence[str], *, output: bool = False) -> str:
    """Which of `stages` handles (or, for an `output` envelope, produced) `env`.

    One stage per process is the common case. In-process chains share one telemetry and keep the
    first topic as `source`, so there the stage is read from the `ontime-stage-ms` entries, one
    per finished stage.
    """
    if len(stages) == 1:
        return stages[0]
    if output and env.stage_times and env.stage_times[-1].stage in stages:
        return env.stage_times[-1].stage
    done = len(env.stage_times)
    if done < len(STAGE_ORDER) and STAGE_ORDER[done] in stages:
        return STAGE_ORDER[done]
    return stages[0] if stages else "unknown"


class Metrics(Telemetry):
    """The `ontime_*` series of one worker process, fed by the stage hooks."""

    def __init__(
        self, pipeline: PipelineSpec, stages: Sequence[str], registry: CollectorRegistry | None = None
    ) -> None:
        self.pipeline = pipeline
        self.stages = list(stages)
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._stage_by_topic = {pipeline.input_topic(s): s for s in stages}
        self._last_stage = STAGE_ORDER[-1]
        self._created = time.monotonic()
        self._ages: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()
        labels = ("pipeline", "stage")
        r = self.registry
        self.queue = Histogram(
            "ontime_stage_queue_seconds",
            "Wait between the upstream produce and this stage taking the message",
            labels, registry=r, buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.compute = Histogram(
            "ontime_stage_compute_seconds",
            "Model run time of the batch each message was computed in",
            labels, registry=r, buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.end_to_end = Histogram(
            "ontime_end_to_end_seconds",
            "Capture (or deadline minus budget) to result delivered, at the last stage",
            labels, registry=r, buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.messages = Counter(
            "ontime_messages",
            "Messages settled by outcome: ok, degraded, late, dlq",
            (*labels, "outcome"), registry=r,
        )  # fmt: skip
        self.batch_size = Histogram(
            "ontime_batch_size", "Messages per computed batch", labels, registry=r, buckets=BATCH_BUCKETS
        )
        self.slack = Histogram(
            "ontime_deadline_slack_seconds",
            "Time left before the deadline when this stage's output was delivered",
            labels, registry=r, buckets=SLACK_BUCKETS,
        )  # fmt: skip
        self.lag_gauge = Gauge(
            "ontime_consumer_lag",
            "Messages behind the partition's high watermark",
            (*labels, "topic", "partition"), registry=r,
        )  # fmt: skip
        self.oldest_age = Gauge(
            "ontime_oldest_unprocessed_age_seconds",
            "Age of the oldest message not yet processed on this worker's partitions (scale on this)",
            labels, registry=r,
        )  # fmt: skip
        self.ready = Gauge(
            "ontime_stage_ready", "1 once the stage's models are loaded and warmed up", labels, registry=r
        )
        self.startup = Gauge(
            "ontime_stage_startup_seconds",
            "Seconds from worker start to models loaded and warmed up",
            labels, registry=r,
        )  # fmt: skip
        self.model_info = Gauge(
            "ontime_model_info",
            "The model variant a stage serves (value 1)",
            (*labels, "model", "version", "variant"), registry=r,
        )  # fmt: skip
        self.version_messages = Counter(
            "ontime_version_messages",
            "Messages settled by the model version that answered them, by outcome (canary, A/B)",
            (*labels, "model", "version", "outcome"), registry=r,
        )  # fmt: skip
        self.version_compute = Histogram(
            "ontime_version_compute_seconds",
            "Model run time of the batch each message was computed in, by model version",
            (*labels, "model", "version"), registry=r, buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.model_changes = Counter(
            "ontime_model_changes",
            "Rollout changes: a version applied, or refused with its reason",
            (*labels, "model", "version", "result"), registry=r,
        )  # fmt: skip
        for stage in self.stages:  # series exist from the start, so rate() sees the first increment
            self.ready.labels(pipeline.name, stage).set(0)
            for outcome in OUTCOMES:
                self.messages.labels(pipeline.name, stage, outcome)

    def started(self, pipeline: str, stage: str) -> None:
        self.ready.labels(self.pipeline.name, stage).set(1)
        self.startup.labels(self.pipeline.name, stage).set(time.monotonic() - self._created)

    def taken(self, topic: str, envs: Sequence[Envelope]) -> None:
        for env in envs:
            stage = self._stage_by_topic.get(topic) or stage_of(env, self.stages)
            self.queue.labels(self.pipeline.name, stage).observe(env.queue_ms() / 1000.0)

    def phase(
        self, name: str, envs: Sequence[Envelope], **attributes: object
    ) -> AbstractContextManager[None]:
        model = attributes.get("model")
        if name == "infer" and isinstance(model, str) and envs:
            model_name, _, rest = model.partition(":")
            stage = stage_of(envs[0], self.stages)
            variant = str(attributes.get("variant", "primary"))
            version = rest.partition(":")[0]
            self.model_info.labels(self.pipeline.name, stage, model_name, version, variant).set(1)
            return self._timed(
                self.version_compute.labels(self.pipeline.name, stage, model_name, version), len(envs)
            )
        return super().phase(name, envs, **attributes)

    @contextmanager
    def _timed(self, histogram: Histogram, members: int) -> Iterator[None]:
        """The wrapped model run's time, observed once per member (as ontime_stage_compute_seconds)."""
        started = time.perf_counter()
        yield
        took = time.perf_counter() - started
        for _ in range(members):
            histogram.observe(took)

    def model_changed(self, stage: str, ref: str, result: str, role: str = "serving") -> None:
        variant, _, version = ref.partition("@")
        self.model_changes.labels(self.pipeline.name, stage, variant, version, result).inc()
        if result == "applied":
            self.model_info.clear()  # the next batch sets the versions now serving

    def computed(self, envs: Sequence[Envelope], outcomes: Sequence[Outcome], compute_ms: float) -> None:
        if not envs:
            return
        stage = stage_of(envs[0], self.stages)
        self.batch_size.labels(self.pipeline.name, stage).observe(len(envs))
        emitted = sum(1 for o in outcomes if o.kind == "emit")
        histogram = self.compute.labels(self.pipeline.name, stage)
        for _ in range(emitted):
            histogram.observe(compute_ms / 1000.0)

    def settled(self, outcomes: Sequence[Outcome]) -> None:
        now = now_ms()
        for outcome in outcomes:
            env = outcome.envelope
            stage = stage_of(env, self.stages, output=outcome.kind == "emit")
            kind = outcome_label(outcome)
            self.messages.labels(self.pipeline.name, stage, kind).inc()
            if env.model:
                model_name, _, rest = env.model.partition(":")
                version = rest.partition(":")[0]
                self.version_messages.labels(self.pipeline.name, stage, model_name, version, kind).inc()
            if outcome.kind != "emit":
                continue
            self.slack.labels(self.pipeline.name, stage).observe(env.deadline.remaining_ms(now) / 1000.0)
            if stage == self._last_stage:
                start = (
                    env.captured_ms
                    if env.captured_ms is not None
                    else env.deadline.at_ms - self.pipeline.budget_ms
                )
                self.end_to_end.labels(self.pipeline.name, stage).observe(max(0.0, now - start) / 1000.0)

    def assignment(self, partitions: Sequence[tuple[str, int]]) -> None:
        # Partitions that left this worker must not keep reporting their last lag.
        keep = set(partitions)
        with self._lock:
            gone = [tp for tp in self._ages if tp not in keep]
            for tp in gone:
                del self._ages[tp]
                stage = self._stage_by_topic.get(tp[0], "unknown")
                with suppress(KeyError):
                    self.lag_gauge.remove(self.pipeline.name, stage, tp[0], str(tp[1]))
            self._refresh_age()

    def lag(self, topic: str, partition: int, lag: int, oldest_age_ms: float | None) -> None:
        stage = self._stage_by_topic.get(topic, "unknown")
        self.lag_gauge.labels(self.pipeline.name, stage, topic, str(partition)).set(lag)
        with self._lock:
            self._ages[(topic, partition)] = (oldest_age_ms or 0.0) / 1000.0
            self._refresh_age()

    def _refresh_age(self) -> None:
        by_stage: dict[str, float] = dict.fromkeys(self.stages, 0.0)
        for (topic, _), age in self._ages.items():
            stage = self._stage_by_topic.get(topic, "unknown")
            by_stage[stage] = max(by_stage.get(stage, 0.0), age)
        for stage, age in by_stage.items():
            self.oldest_age.labels(self.pipeline.name, stage).set(age)

    def holding(self, reason: str | None) -> None:
        for stage in self.stages:
            self.ready.labels(self.pipeline.name, stage).set(0 if reason else 1)

    def stopped(self) -> None:
        for stage in self.stages:
            self.ready.labels(self.pipeline.name, stage).set(0)
